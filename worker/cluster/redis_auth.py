"""Who may do what on the service's Redis servers: one application user, and no administration through it.

`zdl cluster up` and docker-compose.yml start every Redis with one user, the `default` one, for the API
and the workers, with a password (a client without it gets NOAUTH). The service never reconfigures,
saves, replicates, flushes or stops a Redis, so that user may not either: whoever learns its password
cannot turn Redis into a way to write files (`CONFIG SET dir`), load code (`MODULE LOAD`) or wipe every
tenant's jobs. The rules are written to an ACL file readable only by its owner, never put on a command
line, where any local user could read them in the process list.

Why `default` and not a user of its own with `default` switched off: Redis (before 8.0) replays the
append-only file as the default user and re-checks each MULTI/EXEC against that user's rules, so with
`default` off every transaction in the file is dropped at a restart (redis/redis#14541): job records lost.
"""

from __future__ import annotations

APP_USER = "default"

#: Commands the application's user may not run (Redis 6.2 and 7 know them all), on top of `-@dangerous`.
DENIED_COMMANDS = (
    "config", "module", "shutdown", "flushall", "flushdb", "debug", "acl", "save", "bgsave", "bgrewriteaof",
    "replicaof", "slaveof", "monitor", "sync", "psync", "failover", "migrate", "restore", "swapdb",
)

#: The few commands of `@dangerous` the service needs: INFO (memory for admission, server run ids) and
#: naming its own connection. KEYS, SORT, CLIENT KILL/PAUSE/LIST, RESTORE-ASKING and the rest stay denied.
ALLOWED_DANGEROUS = ("info", "client|setname", "client|getname", "client|id")

#: Every key and channel (`&*`: pub/sub channels, needed for job events), every command but the dangerous
#: ones (an allow-list by category: a command Redis adds to `@dangerous` later is denied too).
APP_USER_RULES = ("on", "~*", "&*", "+@all", "-@dangerous", *(f"+{command}" for command in ALLOWED_DANGEROUS),
                  *(f"-{command}" for command in DENIED_COMMANDS))


def acl_file_text(password: str) -> str:
    """An ACL file (`redis-server --aclfile`) with the application's user, its password and its rules."""
    if not password or any(c.isspace() for c in password):
        raise ValueError("the Redis password must be non-empty and contain no whitespace")
    rules = " ".join((APP_USER_RULES[0], f">{password}", *APP_USER_RULES[1:]))
    return f"user {APP_USER} {rules}\n"
