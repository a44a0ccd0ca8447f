"""Each API process's short memory of the named keys, so that a request costs no Redis read for its key.

An entry (a key's record, or the fact that there is none) is kept for `TTL_S`: a key made on another API
process works at once (it was never looked up here, so nothing stale is cached), and a revoked key is
refused by every process within `TTL_S` of its revocation, and at once by the process that revoked it.
Looking a key up also notes when it was last used, at most once per `TTL_S` per key.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio
import redis.exceptions

from worker.settings import Settings
from worker.state.apikeys import ApiKey
from worker.state.replies import hash_reply

log = logging.getLogger(__name__)

#: How long a process trusts what it read of a key (the issue asks for revocation within a second).
TTL_S = 0.5
#: At most this many keys are remembered (random keys sent by a stranger must not grow the process).
MAX_ENTRIES = 10_000

_TOUCH = "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1]) end"


class KeyCache:
    """owner id -> (its ApiKey or None, when this process read it)."""

    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self.client, self.settings = client, settings
        self._entries: dict[str, tuple[ApiKey | None, float]] = {}

    async def lookup(self, owner: str) -> ApiKey | None:
        now = time.monotonic()
        cached = self._entries.get(owner)
        if cached is not None and now - cached[1] < TTL_S:
            return cached[0]
        key = self.settings.key("apikey", owner)
        raw = hash_reply(await self.client.hgetall(key))
        entry = ApiKey.from_hash(owner, {k.decode(): v.decode() for k, v in raw.items()}) if raw else None
        if entry is not None:
            await self._touch(key)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[owner] = (entry, now)
        return entry

    async def _touch(self, key: str) -> None:
        """Note the use (best effort: a full Redis refuses the write, and the request goes on without it)."""
        try:
            await self.client.eval(_TOUCH, 1, key, repr(time.time()))
        except redis.exceptions.RedisError as exc:
            log.warning("could not note when key %s was last used (%s)", key, exc)

    def forget(self, owner: str) -> None:
        """Drop what this process knows of `owner` (after revoking it here)."""
        self._entries.pop(owner, None)
