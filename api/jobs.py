"""What the job routes do beyond HTTP: checks against the dataset and the limits, creating and scheduling.

Kept out of the routes so that each route reads as validate, call, return.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError

from api.models import Estimate, JobCreate, JobOut
from worker.celery_app.app import RUN_JOB
from worker.scheduling import scheduler
from worker.scheduling.heartbeat import alive_workers
from worker.scheduling.plan import plan, refusal
from worker.settings import Settings
from worker.state.job_store import JobStore, QuotaExceeded, result_bytes
from zdl.datasets import dataset_shape

log = logging.getLogger(__name__)


def field_error(loc: tuple[str, ...], message: str, value: Any) -> RequestValidationError:
    """A 422 in FastAPI's own shape, naming the field, for checks pydantic cannot make alone."""
    return RequestValidationError([{"type": "value_error", "loc": ("body", *loc), "msg": message, "input": value}])


def check_spec(spec: JobCreate, settings: Settings) -> None:
    """Sizes must match the dataset, and the request must stay within the limits in the settings."""
    input_size, output_size = dataset_shape(spec.dataset)
    for name, expected in (("input_size", input_size), ("output_size", output_size)):
        given = getattr(spec.model, name)
        if given is not None and given != expected:
            raise field_error(("model", name), f"model.{name} is {given} but dataset {spec.dataset!r} has "
                                               f"{name} {expected}", given)
    limits = [
        (("model", "hidden_size"), spec.model.hidden_size, settings.max_hidden_size, "ZDL_MAX_HIDDEN_SIZE"),
        (("training", "iters"), spec.training.iters, settings.max_iters, "ZDL_MAX_ITERS"),
        (("training", "batch_size"), spec.training.batch_size, settings.max_batch_size, "ZDL_MAX_BATCH_SIZE"),
        (("model", "weight_init_std"), spec.model.weight_init_std, settings.max_weight_init_std,
         "ZDL_MAX_WEIGHT_INIT_STD; initial weights this large saturate every unit, the book uses 0.01"),
    ]
    if isinstance(spec.gradient.blocks, int):
        limits.append((("gradient", "blocks"), spec.gradient.blocks, settings.max_blocks, "ZDL_MAX_BLOCKS"))
    for loc, value, limit, env in limits:
        if value > limit:
            raise field_error(loc, f"{'.'.join(loc)} is {value}, over the limit of {limit} ({env})", value)


def admit(spec: dict[str, Any], store: JobStore) -> None:
    """Nothing if the cluster can run the job; else a 422 with the estimate, the limit it breaks and what to change."""
    settings = store.settings
    job = plan(spec, settings, len(alive_workers(store.client, settings, settings.blocks_queue)))
    refused = refusal(job, spec, settings)
    if refused is not None:
        loc, message = refused
        raise field_error(loc, message, spec[loc[0]][loc[1]])


def job_out(record: dict[str, Any], settings: Settings, live_block_workers: int) -> JobOut:
    """The public view of a job, with its estimate at the block workers alive now. A stored record that no
    longer reads as a job (written by a bug, or an incompatible version) is an UnreadableJob."""
    try:
        spec = record["spec"]
        job = plan(spec, settings, live_block_workers)
        estimate = Estimate(core_seconds=job.total_core_s, group_memory_mb=job.group_memory_mb,
                            wall_s=job.wall_s(spec["training"]["iters"]), block_workers=live_block_workers)
        return JobOut.from_record(record, estimate)
    except (KeyError, TypeError, ValueError) as exc:
        raise UnreadableJob(f"job {record.get('id')}: {exc!r}") from exc


def readable_jobs(records: list[dict[str, Any]], settings: Settings, live_block_workers: int) -> list[JobOut]:
    """The records that read as jobs (an unreadable one is logged and left out of the list)."""
    jobs = []
    for record in records:
        try:
            jobs.append(job_out(record, settings, live_block_workers))
        except UnreadableJob as exc:
            log.error("leaving an unreadable record out of a list: %s", exc)
    return jobs


class UnreadableJob(Exception):
    """A stored job record that does not validate as a job (answered as a 500 with a request id)."""


def submit(store: JobStore, celery: Celery, spec: JobCreate, owner: str,
           idempotency_key: str | None) -> tuple[dict[str, Any], bool]:
    """Create `owner`'s job (or return the one their Idempotency-Key made) and let the scheduler start it if
    a coordinator slot is free: (record, created).

    429 when the owner is at one of its limits (active jobs, stored jobs, stored bytes).
    """
    check_spec(spec, store.settings)
    stored_spec = spec.model_dump(mode="json")
    admit(stored_spec, store)
    try:
        job_id, created = store.create(stored_spec, owner, idempotency_key, reserved_bytes=result_bytes(stored_spec))
    except QuotaExceeded as exc:
        raise HTTPException(429, str(exc)) from exc
    record = store.get(job_id)
    if record is None:  # deleted between the two calls
        raise HTTPException(409, f"Idempotency-Key {idempotency_key!r} refers to a job that was just deleted")
    if not created:
        if record["spec"] != stored_spec:
            raise HTTPException(409, f"Idempotency-Key {idempotency_key!r} was used for a different request body")
        return record, False
    try:
        scheduler.dispatch(store.client, store.settings, send_to_coordinator(celery, store.settings))
    except Exception:  # the job is stored and queued: a coordinator's next heartbeat starts it
        log.exception("job %s: could not dispatch it now", job_id)
    return record, True


def send_to_coordinator(celery: Celery, settings: Settings) -> scheduler.Send:
    """How the API hands a job to the coordinator queue (the scheduler decides when)."""
    return lambda job_id: celery.send_task(RUN_JOB, args=[job_id], queue=settings.coordinator_queue)
