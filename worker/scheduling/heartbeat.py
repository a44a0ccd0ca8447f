"""Worker heartbeats in Redis: who is listening on which queue, without asking the workers.

`/readyz` and `blocks: "auto"` need to know which workers are alive. `celery inspect ping` waits on
replies from every worker (a second or more, and nothing while a solo worker computes); a heartbeat
is one ZADD every few seconds from a thread of each worker, and one ZCOUNT to read. Each worker also
says how many jobs it runs at once (its slots, for the scheduler). The same thread of each coordinator
worker looks after the jobs: it resumes those whose coordinator died (worker/scheduling/recovery.py), sends queued
jobs to free slots (worker/scheduling/scheduler.py) and deletes finished jobs whose retention time has passed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import bootsteps

from worker.settings import Settings, get_settings
from worker.state import keys
from worker.state.connection import redis_client
from worker.state.replies import texts

log = logging.getLogger(__name__)


def beat(client: redis.Redis, settings: Settings, hostname: str, queues: list[str], slots: int = 1) -> None:
    """Mark `hostname` alive on each queue now, with its number of slots, and drop members long gone."""
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zadd(keys.workers(settings, queue), {hostname: now})
            pipe.zremrangebyscore(keys.workers(settings, queue), "-inf", now - 10 * settings.heartbeat_ttl_s)
            pipe.hset(keys.slots(settings, queue), hostname, slots)
        pipe.execute()


def leave(client: redis.Redis, settings: Settings, hostname: str, queues: list[str]) -> None:
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zrem(keys.workers(settings, queue), hostname)
            pipe.hdel(keys.slots(settings, queue), hostname)
        pipe.execute()


def alive_workers(client: redis.Redis, settings: Settings, queue: str) -> set[str]:
    """Hostnames that heartbeated on `queue` within the last heartbeat_ttl_s seconds."""
    members = client.zrangebyscore(keys.workers(settings, queue), time.time() - settings.heartbeat_ttl_s, "+inf")
    return set(texts(members))


def recently_lost_workers(client: redis.Redis, settings: Settings, queue: str) -> set[str]:
    """Hostnames whose heartbeat on `queue` stopped within the last few minutes (killed, or cut off);
    a worker that shuts down cleanly leaves the set instead."""
    now = time.time()
    members = client.zrangebyscore(keys.workers(settings, queue), now - 10 * settings.heartbeat_ttl_s,
                                   f"({now - settings.heartbeat_ttl_s}")
    return set(texts(members))


def look_after_jobs(client: redis.Redis, settings: Settings, enqueue: Callable[[str], Any]) -> None:
    """A coordinator worker's rounds: resume orphaned jobs, start queued ones, delete expired ones."""
    from worker.scheduling import recovery, scheduler  # (they import the coordinator's modules; not needed before)
    from worker.state.job_store import JobStore

    recovery.recover_orphans(client, settings, enqueue)
    scheduler.dispatch(client, settings, enqueue)
    JobStore(client, settings).delete_expired()


class Heartbeat(bootsteps.StartStopStep):
    """Worker bootstep: a daemon thread that heartbeats while the worker runs, and leaves on shutdown."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        settings = get_settings()
        queues = sorted(worker.app.amqp.queues.consume_from or worker.app.amqp.queues)
        self.hostname, self.queues, self.app = worker.hostname, queues, worker.app
        self.slots = int(getattr(worker, "concurrency", 1) or 1)
        self.thread = threading.Thread(target=self._run, args=(settings,), name="zdl-heartbeat", daemon=True)
        self.thread.start()
        log.info("heartbeat for %s on %s", self.hostname, ", ".join(queues))

    def _run(self, settings: Settings) -> None:
        client = redis_client()
        sweeps = settings.coordinator_queue in self.queues  # coordinator workers look after the jobs

        def enqueue(job_id: str) -> None:
            self.app.send_task("zdl.run_job", args=[job_id], queue=settings.coordinator_queue)

        while not self.stopping.is_set():
            try:
                beat(client, settings, self.hostname, self.queues, self.slots)
                if sweeps:
                    look_after_jobs(client, settings, enqueue)
            except Exception as exc:  # Redis away for a while: keep trying, /readyz shows it
                log.warning("heartbeat failed: %s", exc)
            self.stopping.wait(settings.heartbeat_interval_s)

    def stop(self, worker: Any) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=2)
            try:
                leave(redis_client(), get_settings(), self.hostname, self.queues)
            except redis.RedisError as exc:
                log.warning("could not remove heartbeat: %s", exc)
