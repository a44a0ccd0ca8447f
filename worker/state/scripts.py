"""The Lua scripts the service runs inside Redis, each made into a Script once per process (EVALSHA, the
script's text sent only when the server does not know it yet).

Each does what must not be split by another client's command in between: join a listing only while the
coordinator still lists the member, or write transient data without entering the append-only file.
"""

from __future__ import annotations

from functools import cache

import redis
from redis.commands.core import Script

#: Set a member's value only if the hash still lists it (not closed, not replaced as lost by its coordinator).
_ENTER = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""

#: Step data is transient, so it is written without entering Redis's append-only file (or replicas):
#: `redis.set_repl(REPL_NONE)` is Redis's switch for that. A restarted Redis resumes jobs from their
#: checkpoints, never from step keys, and the ~0.5 MB a step writes would otherwise be appended to disk.
_SET_UNLOGGED = """
redis.set_repl(redis.REPL_NONE)
return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
"""
_PUSH_UNLOGGED = """
redis.set_repl(redis.REPL_NONE)
local length = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return length
"""

#: The store's reserve (worker/state/headroom.py) is ballast held in memory only: it stays out of the
#: append-only file too (a restarted Redis gets it back from the next heartbeat).
_SET_UNLOGGED_NX = """
redis.set_repl(redis.REPL_NONE)
return redis.call('SET', KEYS[1], ARGV[1], 'NX')
"""


@cache
def _script(text: str) -> Script:
    """The script object of `text`, made once per process (its SHA1 computed once): every call names the
    client (or pipeline) it runs on, which sends EVALSHA and loads the text only where it is unknown."""
    return Script(None, text.encode())  # type: ignore[arg-type]


def enter(client: redis.Redis, listing: str, member: str, value: str) -> bool:
    """Mark `member` of the hash `listing` as `value` (the worker now serving it) if it is still listed;
    False if its coordinator no longer wants it (the run closed, or the member was replaced as lost)."""
    return bool(_script(_ENTER)(keys=[listing], args=[member, value], client=client))


def set_unlogged(client: redis.Redis, pipe: redis.client.Pipeline, key: str, value: bytes, ttl_s: int) -> None:
    """Queue on `pipe` (of `client`) a SET with an expiry that stays out of the append-only file."""
    _script(_SET_UNLOGGED)(keys=[key], args=[value, ttl_s], client=pipe)


def push_unlogged(client: redis.Redis, pipe: redis.client.Pipeline, key: str, value: bytes, ttl_s: int) -> None:
    """Queue on `pipe` (of `client`) an RPUSH and an expiry that stay out of the append-only file."""
    _script(_PUSH_UNLOGGED)(keys=[key], args=[value, ttl_s], client=pipe)


def set_unlogged_nx(client: redis.Redis, key: str, value: bytes) -> bool:
    """SET `key` (no expiry) if it does not exist, without entering the append-only file; True if set."""
    return bool(_script(_SET_UNLOGGED_NX)(keys=[key], args=[value], client=client))
