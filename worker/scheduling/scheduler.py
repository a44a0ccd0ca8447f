"""Which queued job runs next: API keys take turns, each with at most ZDL_MAX_RUNNING_JOBS_PER_KEY running.

A coordinator runs one job per slot (its Celery concurrency) for the job's whole life. Were every job sent
straight into Celery's first-in-first-out queue, one key's ten jobs would take every slot while another
key's job waited behind all of them. So a new job waits in its owner's pending queue (`JobStore.create`),
and `dispatch` sends jobs to the coordinator queue only while a slot is free: each time the oldest job of
the key served longest ago among those under their running limit. Any process may call it (the API after
a submit, a coordinator after its job ends, every coordinator worker at each heartbeat); a short lock lets
one decide at a time, and WATCH makes each pick safe against a submit or cancel at the same moment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from worker.scheduling.heartbeat import alive_workers
from worker.settings import Settings
from worker.state import keys
from worker.state.replies import text, texts, transaction

log = logging.getLogger(__name__)

#: A dispatched job that has not started after this long (its message lost with a dying worker) is sent again;
#: the job's lease keeps a duplicate from running it twice.
DISPATCH_TIMEOUT_S = 30.0

Send = Callable[[str], Any]


def capacity(client: redis.Redis, settings: Settings) -> int:
    """Jobs the live coordinator workers can run at once (the sum of their concurrency)."""
    alive = alive_workers(client, settings, settings.coordinator_queue)
    if not alive:
        return 0
    slots = client.hmget(keys.slots(settings, settings.coordinator_queue), sorted(alive))
    return sum(int(s) if s is not None else 1 for s in slots)


def dispatch(client: redis.Redis, settings: Settings, send: Send) -> list[str]:
    """Send queued jobs to coordinators while slots are free, keys in turn; returns the ids sent."""
    lock = client.lock(keys.scheduler_lock(settings), timeout=10, blocking=False)
    if not lock.acquire():
        return []  # another process is deciding right now, with the same information
    try:
        _resend_stale(client, settings, send)
        busy = client.zcard(keys.jobs_index(settings, "running")) + client.zcard(keys.dispatched(settings))
        sent: list[str] = []
        for _ in range(capacity(client, settings) - busy):
            job_id = _pick(client, settings)
            if job_id is None:
                break
            send(job_id)
            sent.append(job_id)
        if sent:
            log.info("dispatched %s", sent)
        return sent
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:  # expired meanwhile: nothing to release
            pass


def _pick(client: redis.Redis, settings: Settings) -> str | None:
    """Move the next job from its owner's pending queue to the dispatched set; None if no key may start one."""
    owners = texts(client.zrange(keys.pending(settings), 0, -1))  # least recently served first
    for owner in owners:
        if _in_flight(client, settings, owner) >= settings.max_running_jobs_per_key:
            continue
        job_id = _take_oldest(client, settings, owner)
        if job_id is not None:
            return job_id
    return None


def _in_flight(client: redis.Redis, settings: Settings, owner: str) -> int:
    with client.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.owner_index(settings, owner, "running"))
        pipe.zcard(keys.dispatched(settings, owner))
        return sum(pipe.execute())


def _take_oldest(client: redis.Redis, settings: Settings, owner: str) -> str | None:
    """The owner's oldest pending job, now marked dispatched and the owner marked served; or None (and the
    owner leaves the round) if it has none."""
    queue, owners = keys.pending(settings, owner), keys.pending(settings)

    def take(pipe: redis.client.Pipeline) -> str | None:
        oldest = pipe.zrange(queue, 0, 0)
        now = time.time()
        pipe.multi()
        if not oldest:
            pipe.zrem(owners, owner)
            return None
        job_id = text(oldest[0])
        pipe.zrem(queue, job_id)
        pipe.zadd(keys.dispatched(settings), {job_id: now})
        pipe.zadd(keys.dispatched(settings, owner), {job_id: now})
        pipe.zadd(owners, {owner: now}, xx=True)
        return job_id

    return transaction(client, take, queue)


def _resend_stale(client: redis.Redis, settings: Settings, send: Send) -> None:
    """Send again the dispatched jobs that have not started in DISPATCH_TIMEOUT_S."""
    now = time.time()
    for raw in client.zrangebyscore(keys.dispatched(settings), "-inf", now - DISPATCH_TIMEOUT_S):
        job_id = text(raw)
        status, owner = client.hmget(keys.JobKeys.of(settings, job_id).record, "status", "owner")
        if status == b"queued":
            log.warning("job %s: dispatched %.0f s ago and not started; sending it again", job_id,
                        now - (client.zscore(keys.dispatched(settings), job_id) or now))
            client.zadd(keys.dispatched(settings), {job_id: now}, xx=True)
            send(job_id)
        else:  # started, ended or deleted, and still listed
            client.zrem(keys.dispatched(settings), job_id)
            if owner is not None:
                client.zrem(keys.dispatched(settings, text(owner)), job_id)
