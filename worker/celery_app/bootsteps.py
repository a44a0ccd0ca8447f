"""The worker's heartbeat thread, started and stopped with the Celery worker as a bootstep.

Every worker heartbeats on the queues it consumes (`worker.scheduling.heartbeat`); coordinator workers also
do the rounds that look after the jobs (`worker.scheduling.rounds`), sending jobs through the worker's own app.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery import bootsteps

from worker.celery_app.enqueue import JobQueue
from worker.scheduling.heartbeat import beat, leave
from worker.scheduling.rounds import look_after_jobs
from worker.settings import Settings, get_settings
from worker.state.connection import redis_client
from worker.state.headroom import refill_reserve

log = logging.getLogger(__name__)


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
        jobs = JobQueue(self.app, settings)
        while not self.stopping.is_set():
            try:
                beat(client, settings, self.hostname, self.queues, self.slots)
                refill_reserve(client, settings)
                if sweeps:
                    look_after_jobs(client, settings, jobs.enqueue)
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
