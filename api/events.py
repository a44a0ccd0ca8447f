"""Server-Sent Events for one job: a snapshot, then what the coordinator publishes, until the job ends.

The subscription (the API process's shared one, api/stream_hub.py) is opened before the snapshot is read,
so an event published in between is not lost; a quiet period re-reads the record, so a missed final event
cannot keep a stream open forever; and a stream lasts at most `max_stream_s`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio

from api.stream_hub import EventHub, StreamSlot
from worker.settings import Settings
from worker.state.keys import FINISHED, JobKeys
from worker.state.records import decode_record
from worker.state.replies import hash_reply

SNAPSHOT_FIELDS = ("status", "iteration", "total", "loss", "train_acc", "test_acc", "iterations_per_s", "eta_s",
                   "error")
QUIET_RECHECK_S = 5.0
#: How soon a client reconnects after a stream ends (the SSE `retry` field), in milliseconds.
RECONNECT_MS = 1000


async def snapshot(client: redis.asyncio.Redis, settings: Settings, job_id: str,
                   owner: str | None = None) -> dict[str, Any] | None:
    """The job's current status and progress as a `status` event body, or None if there is no such job
    (or, given `owner`, none of theirs)."""
    raw = await client.hgetall(JobKeys.of(settings, job_id).record)
    if not raw:
        return None
    record = decode_record(hash_reply(raw))
    if owner is not None and record.get("owner") != owner:
        return None
    return {"type": "status", **{k: record[k] for k in SNAPSHOT_FIELDS if k in record}}


async def stream(client: redis.asyncio.Redis, settings: Settings, hub: EventHub, slot: StreamSlot, job_id: str,
                 first: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """SSE events (`event`, `data`) for the job; ends after the event that says it finished, or after
    `max_stream_s` (the client reconnects then: EventSource by itself, zdl's client after a poll)."""
    ends_at = time.monotonic() + settings.max_stream_s
    try:
        async with hub.subscribe(JobKeys.of(settings, job_id).events) as queue:
            event: dict[str, Any] | None = await snapshot(client, settings, job_id) or first
            while event is not None:
                yield {"event": event["type"], "data": json.dumps(event), "retry": RECONNECT_MS}
                if event["type"] == "status" and event["status"] in FINISHED:
                    return
                event = await _next_event(queue, client, settings, job_id, ends_at)
    finally:
        slot.release()


async def _next_event(queue: asyncio.Queue[bytes], client: redis.asyncio.Redis, settings: Settings, job_id: str,
                      ends_at: float) -> dict[str, Any] | None:
    """The next event; a re-read of the record after a quiet period; None when the stream is to end."""
    while True:
        left = ends_at - time.monotonic()
        if left <= 0:
            return None
        try:
            return dict(json.loads(await asyncio.wait_for(queue.get(), timeout=min(QUIET_RECHECK_S, left))))
        except TimeoutError:
            pass
        current = await snapshot(client, settings, job_id)
        if current is None or current["status"] in FINISHED:
            return current
