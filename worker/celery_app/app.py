"""The Celery application: JSON only, late acknowledgement, one queue for jobs and one for blocks.

Two queues, served by separate worker processes, are what keeps a coordinator that waits on its
blocks from ever deadlocking a pool: the processes it waits on never wait on it.

Start workers with:
    celery -A worker.celery_app.app:app worker -Q zdl.coordinator -c 1 --pool prefork   # runs jobs
    celery -A worker.celery_app.app:app worker -Q zdl.blocks -c 1 --pool solo           # runs block loops
"""

from __future__ import annotations

import gc
import logging
import ssl
from typing import Any

from celery import Celery, signals

from worker.celery_app import (  # noqa: F401  (connect their signals: a task's freed memory returned, logs)
    heap,
    log_context,
)
from worker.celery_app.bootsteps import Heartbeat
from worker.celery_app.enqueue import JobQueue
from worker.celery_app.names import RUN_JOB, SERVE_BLOCKS, SERVE_REPLICA
from worker.settings import Settings, get_settings
from zdl.engine import kernel_name, warm_up

log = logging.getLogger(__name__)

def create_app(settings: Settings | None = None) -> Celery:
    """The app for `settings` (default: from the environment); a process uses one, `app` below (`job_queue`)."""
    settings = settings or get_settings()
    app = Celery("zdl", broker=settings.broker, include=["worker.celery_app.tasks"])
    app.conf.update(
        # A broker message must never be able to run code: JSON in, JSON out, nothing else accepted.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        # Results travel through our own Redis keys; Celery's result backend is not used.
        task_ignore_result=True,
        # A task is acknowledged when it has finished, and given back if its process dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_routes={RUN_JOB: {"queue": settings.coordinator_queue}, SERVE_BLOCKS: {"queue": settings.blocks_queue},
                     SERVE_REPLICA: {"queue": settings.blocks_queue}},
        task_default_queue=settings.coordinator_queue,
        # Unacknowledged messages are redelivered after this; a job's coordinator task runs for its whole
        # job, so it must exceed any job. Lost work is found sooner without it: lost blocks are re-sent by
        # the coordinator, and a job whose coordinator died is resumed by the lease sweep (scheduling/recovery.py).
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        # kombu connects to a rediss:// URL without ssl_* parameters without checking the server's certificate
        # (it only warns); check it against the system's CAs, as redis-py does on every other connection. The
        # URL's own ssl_* parameters (ssl_ca_certs=...) replace these.
        broker_use_ssl={"ssl_cert_reqs": ssl.CERT_REQUIRED} if settings.broker.startswith("rediss://") else False,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.steps["worker"].add(Heartbeat)
    return app


@signals.worker_init.connect
def compile_kernels(**_: Any) -> None:
    """Compile the engine's kernels (or load them from Numba's cache) before the worker takes any work and
    before it heartbeats, so no job's step ever waits for a compiler (pool processes fork from here)."""
    seconds = warm_up()
    log.info("engine kernels (%s) ready in %.2f s", kernel_name(), seconds)


@signals.worker_ready.connect
@signals.worker_process_init.connect
def freeze_startup_heap(**_: Any) -> None:
    """Exclude the worker's start-up objects (Celery, kombu, numpy: ~10^5) from garbage collection.

    A block computation allocates thousands of small arrays, which triggers collections; scanning the
    whole start-up heap each time made blocks ~15% slower in a worker than in a bare process.
    """
    gc.freeze()


app = create_app()


def job_queue(settings: Settings | None = None) -> JobQueue:
    """The coordinator queue for `settings` (default: this process's), through this process's app; settings other
    than the environment's (an API built inside a test) get an app of their own."""
    if settings is None or settings == get_settings():
        return JobQueue(app, get_settings())
    return JobQueue(create_app(settings), settings)
