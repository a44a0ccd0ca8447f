"""What each worker process works on now, for the admin's view: "<worker>|<job id>" -> since when.

Written when a task starts work on a job (a coordinator's run, a block loop, a gang replica) and removed
when it ends; an entry left by a killed process is ignored once its worker stops heartbeating.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from worker.scheduling.heartbeat import alive_workers
from worker.settings import Settings
from worker.state.replies import text

log = logging.getLogger(__name__)


def busy_key(settings: Settings, queue: str) -> str:
    return settings.key("busy", queue)


@contextmanager
def working_on(client: redis.Redis, settings: Settings, queue: str, worker: str, job_id: str) -> Iterator[None]:
    """Listed as working on `job_id` while the block runs (best effort: Redis away lists nothing)."""
    field = f"{worker}|{job_id}"
    try:
        client.hset(busy_key(settings, queue), field, repr(time.time()))
    except redis.RedisError as exc:
        log.warning("could not list %s as busy (%s)", field, exc)
    try:
        yield
    finally:
        try:
            client.hdel(busy_key(settings, queue), field)
        except redis.RedisError:
            pass


def workers_and_jobs(client: redis.Redis, settings: Settings, queue: str) -> dict[str, list[str]]:
    """Each live worker of `queue` -> the ids of the jobs it works on now (an idle worker has none)."""
    alive = alive_workers(client, settings, queue)
    out: dict[str, list[str]] = {worker: [] for worker in sorted(alive)}
    for raw in client.hkeys(busy_key(settings, queue)):
        worker, _, job_id = text(raw).rpartition("|")
        if worker in out:
            out[worker].append(job_id)
    return out
