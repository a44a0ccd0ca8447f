"""Celery tasks: thin wrappers that take identifiers and keys, and call the plain functions that do the work."""

from __future__ import annotations

import signal
import threading
from typing import Any

from celery import Task, signals
from celery.worker import state

from worker.celery_app.app import app, job_queue
from worker.celery_app.names import RUN_JOB, SERVE_BLOCKS, SERVE_REPLICA
from worker.coordinator import lifecycle
from worker.fanout import block_loop
from worker.fanout.block_loop import LoopStart
from worker.gang import replica
from worker.gang.protocol import ReplicaStart
from worker.scheduling.busy import working_on
from worker.scheduling.heartbeat import identity
from worker.settings import get_settings
from worker.state import keys
from worker.state.connection import redis_client, step_data
from worker.state.job_store import JobStore

#: Set when this pool process receives SIGTERM (a worker or cluster being stopped): the job it coordinates
#: is checkpointed at the end of the current step and resumes on another coordinator, instead of dying.
_terminating = threading.Event()


@signals.worker_process_init.connect
def checkpoint_on_sigterm(**_: Any) -> None:
    """In a prefork pool process (coordinators), SIGTERM asks the running job to stop cleanly."""
    signal.signal(signal.SIGTERM, lambda signum, frame: _terminating.set())


@app.task(name=RUN_JOB, bind=True)
def run_job(self: Task, job_id: str) -> str | None:
    """Coordinate one job to its end (queue zdl.coordinator). Deterministic failures end the job, no retry."""
    client, settings, worker = redis_client(), get_settings(), self.request.hostname or "unknown"
    with working_on(client, settings, settings.coordinator_queue, worker, job_id):
        return lifecycle.run_job(job_id, client=client, data=step_data(settings), store=JobStore(client, settings),
                                 send=lifecycle.Senders(start_loops, start_replicas), worker=worker,
                                 stopping=_terminating.is_set, after=lambda: job_queue().dispatch(client))


@app.task(name=SERVE_BLOCKS, bind=True)
def serve_blocks(self: Task, start: dict[str, Any]) -> int:
    """Serve one job run's block requests until idle (queue zdl.blocks); arrays come and go through Redis. The loop
    and its groups are taken in this process's name (`identity`), so that they are seen lost if it dies."""
    loop, settings, worker = LoopStart.from_dict(start), get_settings(), self.request.hostname or "unknown"
    with working_on(redis_client(), settings, settings.blocks_queue, worker, loop.job_id):
        return block_loop.serve(redis_client(), step_data(), settings, loop, identity(worker), stopping=worker_stopping)


@app.task(name=SERVE_REPLICA, bind=True)
def serve_replica(self: Task, start: dict[str, Any]) -> int:
    """Run one replica of a job's gang for a turn (queue zdl.blocks); parts come and go through Redis."""
    gang, settings, worker = ReplicaStart.from_dict(start), get_settings(), self.request.hostname or "unknown"
    with working_on(redis_client(), settings, settings.blocks_queue, worker, gang.job_id):
        return replica.serve_replica(redis_client(), step_data(), settings, gang, identity(worker),
                                     stopping=worker_stopping)


def worker_stopping() -> bool:
    """Whether this worker has been asked to shut down (Celery sets these on SIGTERM / SIGQUIT).

    Compared by identity as Celery does: a warm shutdown sets should_stop to EX_OK, which is 0 (== False).
    """
    return any(flag is not None and flag is not False for flag in (state.should_stop, state.should_terminate))


def start_loops(starts: list[LoopStart]) -> None:
    """Put block-loop starts on the blocks queue through one pooled producer."""
    with app.producer_or_acquire() as producer:
        for start in starts:
            # argsrepr: a short label instead of Celery's repr of the message
            serve_blocks.apply_async(args=[start.to_dict()], producer=producer,
                                     argsrepr=f"job {start.job_id} loop {start.loop_id}")


def start_replicas(starts: list[ReplicaStart]) -> None:
    """Put a gang's replicas on the blocks queue one right after the other (under a lock, so two gangs never
    interleave: workers take them in order, and a gang never waits for a replica queued behind another's)."""
    settings = get_settings()
    with redis_client().lock(keys.gang_start_lock(settings), timeout=10), app.producer_or_acquire() as producer:
        for start in starts:
            serve_replica.apply_async(args=[start.to_dict()], producer=producer,
                                      argsrepr=f"job {start.job_id} turn {start.turn} replica {start.replica}")
