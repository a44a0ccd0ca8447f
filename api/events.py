"""Server-Sent Events for one job: a snapshot, then what the coordinator publishes, until the job ends.

The subscription is opened before the snapshot is read, so an event published in between is not
lost; a quiet period re-reads the record, so a missed final event cannot keep a stream open forever.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio

from worker.settings import Settings
from worker.state.job_store import decode_record
from worker.state.keys import FINISHED, JobKeys
from worker.state.replies import hash_reply

SNAPSHOT_FIELDS = ("status", "iteration", "total", "loss", "train_acc", "test_acc", "iterations_per_s", "eta_s",
                   "error")
QUIET_RECHECK_S = 5.0


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


async def stream(client: redis.asyncio.Redis, settings: Settings, job_id: str,
                 first: dict[str, Any]) -> AsyncIterator[dict[str, str]]:
    """SSE events (`event`, `data`) for the job; ends after the event that says it finished."""
    pubsub = client.pubsub()
    await pubsub.subscribe(JobKeys.of(settings, job_id).events)
    try:
        event: dict[str, Any] | None = await snapshot(client, settings, job_id) or first
        while event is not None:
            yield {"event": event["type"], "data": json.dumps(event)}
            if event["type"] == "status" and event["status"] in FINISHED:
                return
            event = await _next_event(pubsub, client, settings, job_id)
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()


async def _next_event(pubsub: redis.asyncio.client.PubSub, client: redis.asyncio.Redis, settings: Settings,
                      job_id: str) -> dict[str, Any] | None:
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=QUIET_RECHECK_S)
        if message is not None:
            return dict(json.loads(message["data"]))
        current = await snapshot(client, settings, job_id)
        if current is None or current["status"] in FINISHED:
            return current
