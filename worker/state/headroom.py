"""Room in the main Redis: a high-water mark for new work, and writes that end work even when it is full.

The main Redis refuses writes that may grow memory once it holds `maxmemory` (policy `noeviction`), and a
MULTI that contains one is refused whole. Three rules keep a full store from wedging the service:

- Admission stops early. New jobs and sweeps are refused (507) once `used_memory` passes
  `redis_high_water` of `maxmemory` (both from `INFO memory`), so the service's own growth always leaves
  room for the writes that end, cancel or delete work.
- Freeing comes first. A change of status, a cancel flag, a delete, a heartbeat or a lease that Redis
  refuses for want of memory runs again as one Lua script whose first write is a DEL: Redis refuses a
  script at maxmemory only when its first write may grow memory (it cannot stop a script half-way), so
  the rest (a few hundred bytes) is accepted. Whoever fills the store to its last byte (another
  application, a runaway script) cannot stop a job from ending, a DELETE, or a worker's heartbeat.
- A reserve for results. A job's weights and history need real room; the workers keep a ballast key of
  `redis_reserve_mb` that a job storing its results on a full store gives up (DEL frees it), and put it
  back when the store is below its high-water mark again. A job whose results fit nowhere ends `failed`
  with that reason.

The Celery broker lives in a Redis of its own (`Settings.broker_url`), so a full job store never refuses a
worker's acknowledgement (which would kill the worker).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from worker.settings import Settings
from worker.state.replies import transaction
from worker.state.scripts import set_unlogged_nx

log = logging.getLogger(__name__)

T = TypeVar("T")


class StoreFull(Exception):
    """The main Redis is past its high-water mark: new work is refused (507) with how much room is left."""


@dataclass(frozen=True)
class Memory:
    """The main Redis's memory, from `INFO memory`: bytes used and its limit (0: none)."""

    used: int
    maxmemory: int

    def high_water(self, settings: Settings) -> int:
        return int(settings.redis_high_water * self.maxmemory)

    def room(self, settings: Settings) -> int:
        """Bytes new work may still take (negative: past the mark); unbounded Redis: a very large number."""
        return self.high_water(settings) - self.used if self.maxmemory else 2**62


def memory(client: redis.Redis) -> Memory:
    info = client.info("memory")
    return Memory(int(info["used_memory"]), int(info.get("maxmemory", 0)))


def reserve_key(settings: Settings) -> str:
    return settings.key("reserve")


def check_room(client: redis.Redis, settings: Settings, need_bytes: int = 0) -> None:
    """Nothing if new work (of about `need_bytes`) fits under the high-water mark; else StoreFull saying
    how much room there is and how to free it."""
    now = memory(client)
    if not now.maxmemory or now.room(settings) >= need_bytes:
        return
    mib = 2**20
    raise StoreFull(f"the job store is full: {now.used / mib:.1f} MiB used of the {now.high_water(settings) / mib:.1f} "
                    f"MiB new work may take ({settings.redis_high_water:g} of maxmemory {now.maxmemory / mib:.0f} MiB, "
                    f"ZDL_REDIS_HIGH_WATER); nothing was stored. Delete finished jobs you no longer need "
                    "(DELETE /v1/jobs/{id}), or ask the operator for room (ZDL_REDIS_MAXMEMORY_MB)")


#: Runs a list of commands atomically, as MULTI would, but accepted by a Redis at maxmemory: Redis refuses a
#: script there only if its first write may grow memory (a script cannot be stopped half-way), so the first
#: write is a DEL (of a key that never exists). An optional guard (ARGV[1..3]: hash key, field, value) stands
#: in for WATCH: nothing is written unless the field still holds the value the caller read. ARGV[4]: the key
#: deleted; then each command as its argument count and its arguments. Returns the commands' replies, or 0
#: when the guard failed. (Redis 6.2 and 7 alike: scripts without flags.)
_ENDING_SCRIPT = """
if ARGV[1] ~= '' and redis.call('HGET', ARGV[1], ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('DEL', ARGV[4])
local replies, i = {}, 5
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  replies[#replies + 1] = redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return replies
"""

Command = tuple[object, ...]
Guard = tuple[str, str]


def ending_commands(client: redis.Redis, settings: Settings, commands: list[Command],
                    guard: tuple[str, str, bytes | str] | None = None) -> list[Any] | None:
    """Run `commands` in one script that a full Redis accepts (see _ENDING_SCRIPT); their replies, or None
    if `guard` (hash key, field, value) no longer holds."""
    args: list[Any] = [*(guard or ("", "", "")), settings.key("never-stored")]
    for command in commands:
        args += [len(command), *command]
    replies = client.eval(_ENDING_SCRIPT, 0, *args)
    return None if replies == 0 else list(replies)


def ending_transaction(client: redis.Redis, settings: Settings, body: Callable[[redis.client.Pipeline], T],
                       *watched: str, guard: Guard) -> T:
    """`worker.state.replies.transaction(client, body, *watched)`, for a write that ends, cancels or removes work:
    on a Redis at maxmemory (which refuses every MULTI) the writes `body` queues run as one script instead,
    guarded by the hash field `guard` that `body` decides on (read before, compared inside the script)."""
    try:
        return transaction(client, body, *watched)
    except redis.exceptions.OutOfMemoryError:
        pass
    while True:
        with client.pipeline() as pipe:
            pipe.watch(*watched)
            seen = pipe.hget(*guard)
            result = body(pipe)
            commands = [tuple(args) for args, _ in pipe.command_stack]
            pipe.reset()
        if not commands or ending_commands(client, settings, commands, (*guard, seen or b"")) is not None:
            return result


def ending_pipeline(client: redis.Redis, settings: Settings, fill: Callable[[redis.client.Pipeline], None]) -> None:
    """Run the writes `fill` queues (a heartbeat's) in a pipeline; on a Redis at maxmemory, as one script."""
    with client.pipeline(transaction=False) as pipe:
        fill(pipe)
        commands = [tuple(args) for args, _ in pipe.command_stack]
        try:
            pipe.execute()
            return
        except redis.exceptions.OutOfMemoryError:
            pass
    ending_commands(client, settings, commands)


def ending_write(client: redis.Redis, settings: Settings, write: Callable[[], T]) -> T:
    """Run `write` (one that ends, cancels or removes work, or keeps a worker alive); if Redis refuses it
    for want of memory, give up the reserve and run it once more."""
    try:
        return write()
    except redis.exceptions.OutOfMemoryError:
        if not client.delete(reserve_key(settings)):
            raise
        log.warning("the main Redis is at maxmemory: released its reserve of %g MiB for a write that ends or "
                    "removes work; new jobs are refused until there is room again", settings.redis_reserve_mb)
        return write()


def refill_reserve(client: redis.Redis, settings: Settings) -> bool:
    """Put the reserve back if it is gone and the store is below its high-water mark with it; True if it
    is in place after the call."""
    key = reserve_key(settings)
    if client.exists(key):
        return True
    size = int(settings.redis_reserve_mb * 2**20)
    if size == 0:
        return True
    if memory(client).room(settings) < size:
        return False
    return set_unlogged_nx(client, key, b"\0" * size)  # ballast: memory only, never the append-only file


def quota_warning(client: redis.Redis, settings: Settings, n_keys: int) -> str | None:
    """A sentence for the log and /readyz when every key at its stored-bytes quota would not fit under the
    high-water mark; None when they fit (or Redis has no limit)."""
    now = memory(client)
    if not now.maxmemory or n_keys == 0:
        return None
    total = n_keys * settings.max_stored_mb_per_key * 2**20
    if total <= now.high_water(settings):
        return None
    return (f"{n_keys} API keys x ZDL_MAX_STORED_MB_PER_KEY={settings.max_stored_mb_per_key:g} MiB = "
            f"{total / 2**20:.0f} MiB exceeds the {now.high_water(settings) / 2**20:.0f} MiB the job store takes "
            f"before refusing new work (maxmemory {now.maxmemory / 2**20:.0f} MiB x ZDL_REDIS_HIGH_WATER="
            f"{settings.redis_high_water:g}): keys may be refused (507) before their quota")
