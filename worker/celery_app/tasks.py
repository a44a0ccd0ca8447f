"""Celery tasks: thin wrappers that take identifiers and keys, and call the plain functions that do the work."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from billiard import process as billiard_process
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


_in_pool_process = threading.Event()


@signals.worker_process_init.connect
def mark_pool_process(**_: Any) -> None:
    """This is a prefork pool process (coordinators): see `checkpoint_on_sigterm`."""
    _in_pool_process.set()


@contextmanager
def checkpoint_on_sigterm() -> Iterator[None]:
    """While a job runs in a prefork pool process, SIGTERM asks it to stop cleanly; billiard's own handler
    (exit at once) is back when it ends, so an idle pool process stops as Celery expects. Installed per job, not
    at process init: billiard resets the terminate signals after Celery's initializer has run (the job would
    then resume only once its lease lapsed). In a solo pool the job runs in the main process, whose SIGTERM is
    Celery's own warm shutdown, and nothing is installed."""
    if not _in_pool_process.is_set() or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: _terminating.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@signals.worker_shutting_down.connect
def hand_over_on_shutdown(**_: Any) -> None:
    """Tell the pool processes too when the worker's main process is asked to stop: `docker stop` signals only
    a container's first process, whose warm shutdown would wait for the running jobs until the stop timeout
    kills them (they would then resume from their last checkpoint, as after a crash). Told, each job saves a
    checkpoint at the end of its step and resumes on another coordinator at once. (`zdl cluster up` signals the
    whole process group already; a second SIGTERM only sets the same flag.)"""
    for child in billiard_process.active_children():
        if child.pid is not None:
            try:
                os.kill(child.pid, signal.SIGTERM)
            except ProcessLookupError:  # already gone
                pass


@app.task(name=RUN_JOB, bind=True)
def run_job(self: Task, job_id: str) -> str | None:
    """Coordinate one job to its end (queue zdl.coordinator). Deterministic failures end the job, no retry."""
    client, settings, worker = redis_client(), get_settings(), self.request.hostname or "unknown"
    with checkpoint_on_sigterm(), working_on(client, settings, settings.coordinator_queue, worker, job_id):
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
