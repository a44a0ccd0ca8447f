"""Who may do what on the service's Redis servers: the application's user, and an operator's for backups.

`zdl cluster up` and docker-compose.yml start every Redis with two users. The `default` one, for the API
and the workers, has a password (a client without it gets NOAUTH) and no administration: the service never
reconfigures, saves, replicates, flushes or stops a Redis, so whoever learns its password cannot turn Redis
into a way to write files (`CONFIG SET dir`), load code (`MODULE LOAD`) or wipe every tenant's jobs. The
`operator` user, with a password of its own that no process of the service holds, may take a snapshot
(`SYNC`/`PSYNC`, `SAVE`/`BGSAVE`), load one back (`RESTORE`) and change settings (`CONFIG SET maxmemory`):
what `zdl backup`, `zdl restore` and an operator need (docs/operations.md). It may not load modules, manage
users, flush, shut down or re-point replication. The rules are written to an ACL file readable only by its
owner, never put on a command line, where any local user could read them in the process list.

Why `default` and not a user of its own with `default` switched off: Redis (before 8.0) replays the
append-only file as the default user and re-checks each MULTI/EXEC against that user's rules, so with
`default` off every transaction in the file is dropped at a restart (redis/redis#14541): job records lost.
"""

from __future__ import annotations

APP_USER = "default"
OPERATOR_USER = "operator"

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

#: Commands the operator's user may not run either: nothing that loads code, changes users, wipes or stops a
#: server, or makes it a replica of another (which would replace its data). It may take snapshots (SYNC,
#: BGSAVE), RESTORE and CONFIG SET (e.g. maxmemory), which the application's user may not.
OPERATOR_DENIED_COMMANDS = (
    "module", "acl", "debug", "shutdown", "flushall", "flushdb", "replicaof", "slaveof", "failover", "migrate",
    "swapdb",
)
OPERATOR_USER_RULES = ("on", "~*", "&*", "+@all", *(f"-{command}" for command in OPERATOR_DENIED_COMMANDS))


def acl_file_text(password: str, operator_password: str | None = None) -> str:
    """An ACL file (`redis-server --aclfile`) with the application's user, its password and its rules, and the
    operator's user when `operator_password` is given."""
    text = _user_line(APP_USER, password, APP_USER_RULES)
    if operator_password is not None:
        text += _user_line(OPERATOR_USER, operator_password, OPERATOR_USER_RULES)
    return text


def _user_line(user: str, password: str, rules: tuple[str, ...]) -> str:
    if not password or any(c.isspace() for c in password):
        raise ValueError(f"the Redis password of user {user!r} must be non-empty and contain no whitespace")
    return f"user {user} {' '.join((rules[0], f'>{password}', *rules[1:]))}\n"
