"""One Redis subscription per API process, shared by all of its event streams, and a limit per key.

A subscription per stream costs a Redis connection each: a key opening hundreds of streams would take the
server's connections (and the pool's) from everyone. Instead the process holds one pub/sub connection,
subscribed to the channels of the jobs someone follows, and a reader task hands each message to the
queues of that channel's streams. A key may hold `max_streams_per_key` streams open at once; more is a 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator

import redis.asyncio

from worker.settings import Settings

log = logging.getLogger(__name__)

#: Messages a stream may have waiting; a stream that falls further behind loses its oldest (the stream
#: re-reads the job's record when it is quiet, so a lost status is found again).
QUEUE_SIZE = 256
READ_TIMEOUT_S = 1.0


class TooManyStreams(Exception):
    """The key already holds its limit of open streams (a 429 naming the limit)."""


class StreamSlot:
    """One open stream of one key; released once, whoever releases it first (the stream or the response)."""

    def __init__(self, hub: EventHub, owner: str) -> None:
        self.hub, self.owner, self.released = hub, owner, False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.hub.open_streams[self.owner] -= 1
            if self.hub.open_streams[self.owner] <= 0:
                del self.hub.open_streams[self.owner]


class EventHub:
    """The process's shared subscription: `reserve` a slot, then `subscribe` a queue to a channel."""

    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self.client, self.settings = client, settings
        self.open_streams: Counter[str] = Counter()
        self.queues: dict[str, set[asyncio.Queue[bytes]]] = {}
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Start reading (the connection is made by the reader, so an API may start before Redis does)."""
        self._reader = asyncio.create_task(self._read(), name="zdl-event-hub")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.pubsub.aclose()

    def reserve(self, owner: str) -> StreamSlot:
        """A slot for one more stream of `owner`; TooManyStreams at the limit."""
        limit = self.settings.max_streams_per_key
        if self.open_streams[owner] >= limit:
            raise TooManyStreams(f"this API key already has {limit} event streams open, the limit "
                                 f"(ZDL_MAX_STREAMS_PER_KEY={limit}); close one, or poll GET /v1/jobs/{{id}}")
        self.open_streams[owner] += 1
        return StreamSlot(self, owner)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Queue[bytes]]:
        """A queue that receives the channel's messages while the context is open."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_SIZE)
        async with self._lock:
            if channel not in self.queues:
                await self.pubsub.subscribe(channel)
                self.queues[channel] = set()
            self.queues[channel].add(queue)
        try:
            yield queue
        finally:
            async with self._lock:
                listeners = self.queues.get(channel, set())
                listeners.discard(queue)
                if not listeners:
                    self.queues.pop(channel, None)
                    with contextlib.suppress(redis.RedisError):
                        await self.pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        """Hand each message to its channel's queues, for the life of the process (Redis errors: retried)."""
        while True:
            try:
                if self.pubsub.connection is None:  # the hub's own channel: the connection exists from now on
                    async with self._lock:
                        await self.pubsub.subscribe(self.settings.key("api-hub"))
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=READ_TIMEOUT_S)
            except redis.RedisError as exc:  # Redis away: streams re-read records meanwhile; resubscribed after
                log.warning("event hub: %s", exc)
                await asyncio.sleep(READ_TIMEOUT_S)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            for queue in tuple(self.queues.get(channel, ())):
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(message["data"])
