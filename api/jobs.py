"""What the job routes do beyond HTTP: checks against the dataset and the limits, creating and scheduling.

Kept out of the routes so that each route reads as validate, call, return.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError

from api.models import Estimate, JobCreate, JobOut
from worker.celery_app.enqueue import JobQueue
from worker.scheduling.admission import live_workers, plan, refusal
from worker.settings import Settings
from worker.state.headroom import check_room
from worker.state.job_store import JobStore, QuotaExceeded, result_bytes
from zdl.datasets import dataset_shape
from zdl.spec import JobSpec

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


def admit(spec: JobSpec, store: JobStore) -> None:
    """Nothing if the cluster can run the job; else a 422 with the estimate, the limit it breaks and what to change."""
    settings = store.settings
    job = plan(spec, settings, live_workers(store.client, settings, settings.blocks_queue))
    refused = refusal(job, spec, settings)
    if refused is not None:
        loc, message = refused
        section, name = loc
        raise field_error(loc, message, getattr(getattr(spec, section), name))


def job_out(record: dict[str, Any], settings: Settings, live_block_workers: int) -> JobOut:
    """The public view of a job, with its estimate at the block workers alive now. A stored record that no
    longer reads as a job (written by a bug, or an incompatible version) is an UnreadableJob."""
    try:
        spec = JobSpec.model_validate(record["spec"])
        job = plan(spec, settings, live_block_workers)
        estimate = Estimate(core_seconds=job.total_core_s, group_memory_mb=job.group_memory_mb,
                            wall_s=job.wall_s(spec.training.iters), block_workers=live_block_workers)
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


def submit(store: JobStore, queue: JobQueue, spec: JobCreate, owner: str,
           idempotency_key: str | None) -> tuple[dict[str, Any], bool]:
    """Create `owner`'s job (or return the one their Idempotency-Key made) and let the scheduler start it if
    a coordinator slot is free: (record, created).

    429 when the owner is at one of its limits (active jobs, stored jobs, stored bytes).
    """
    check_spec(spec, store.settings)
    admit(spec, store)
    stored_spec = spec.model_dump(mode="json")
    need_room(store.client, store.settings, result_bytes(spec))
    try:
        job_id, created = store.create(stored_spec, owner, idempotency_key, reserved_bytes=result_bytes(spec))
    except QuotaExceeded as exc:
        raise HTTPException(429, str(exc)) from exc
    record = store.get(job_id)
    if record is None:  # deleted between the two calls
        raise HTTPException(409, f"Idempotency-Key {idempotency_key!r} refers to a job that was just deleted")
    return replay_or_dispatch(record, created, record["spec"] == stored_spec, idempotency_key, queue, store.client)


def replay_or_dispatch(record: dict[str, Any], created: bool, same_request: bool, idempotency_key: str | None,
                       queue: JobQueue, client: redis.Redis) -> tuple[dict[str, Any], bool]:
    """(record, created) for a job or sweep just made, or found by its Idempotency-Key: a key used again must come
    with the same request (else 409); what is new is started now if a coordinator slot is free."""
    if not created:
        if not same_request:
            raise HTTPException(409, f"Idempotency-Key {idempotency_key!r} was used for a different request body")
        return record, False
    try:
        queue.dispatch(client)
    except Exception:  # stored and queued: a coordinator's next heartbeat starts it
        log.exception("%s: could not dispatch it now", record.get("id"))
    return record, True



def need_room(client: Any, settings: Settings, need_bytes: int) -> None:
    """StoreFull (a 507, api/errors.py) when the job store is past its high-water mark (worker/state/headroom.py)."""
    check_room(client, settings, need_bytes)
