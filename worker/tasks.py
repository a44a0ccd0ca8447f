"""Celery tasks: thin wrappers that take identifiers and keys, and call the plain functions that do the work."""

from __future__ import annotations

from typing import Any

from celery import Task

from worker import blocks, jobs
from worker.blocks import BlockRequest
from worker.celery_app import COMPUTE_BLOCKS, RUN_JOB, app
from worker.connection import redis_client
from worker.settings import get_settings
from worker.store import JobStore


@app.task(name=RUN_JOB, bind=True)
def run_job(self: Task, job_id: str) -> str | None:
    """Coordinate one job to its end (queue zdl.coordinator). Deterministic failures end the job, no retry."""
    client, settings = redis_client(), get_settings()
    return jobs.run_job(job_id, client=client, store=JobStore(client, settings), send=send_blocks,
                        worker=self.request.hostname or "unknown")


@app.task(name=COMPUTE_BLOCKS, bind=True)
def compute_blocks(self: Task, request: dict[str, Any]) -> None:
    """Compute one group of gradient blocks of one step (queue zdl.blocks); arrays come and go through Redis."""
    blocks.compute_group(redis_client(), get_settings(), BlockRequest.from_dict(request),
                         self.request.hostname or "unknown")


def send_blocks(requests: list[BlockRequest]) -> None:
    """Put block requests on the blocks queue through one pooled producer."""
    with app.producer_or_acquire() as producer:
        for request in requests:
            # argsrepr: a short label instead of Celery's repr of the whole request (saves ~0.1 ms a task)
            compute_blocks.apply_async(args=[request.to_dict()], producer=producer,
                                       argsrepr=f"job {request.job_id} step {request.step} group {request.group}")
