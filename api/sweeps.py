"""What the sweep routes do beyond HTTP: turning a sweep request into job bodies, creating them together, and
the results table.

Every job of a sweep is checked exactly as a job posted on its own (the body's model, `check_spec`), and an
error in one names the setting that caused it (`grid.learning_rate: ...`) or, if the base is at fault,
the base's field (`base.training.iters: ...`).
"""

from __future__ import annotations

import copy
import logging
import math
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.jobs import admit, check_spec, field_error, send_to_coordinator
from api.models import JobCreate
from api.sweep_models import RunLinks, SweepCreate, SweepLinks, SweepOut, SweepProgress, SweepRun, SweepStatus
from worker.scheduling import scheduler
from worker.scheduling.heartbeat import alive_workers
from worker.state.job_store import QuotaExceeded, Record, result_bytes
from worker.state.keys import FINISHED, STATUSES
from worker.state.sweep_store import SweepStore
from zdl.client.bodies import SETTING_PATHS, describe, put

log = logging.getLogger(__name__)


def create(sweeps: SweepStore, celery: Celery, body: SweepCreate, owner: str,
           idempotency_key: str | None) -> tuple[Record, bool]:
    """Create the sweep's jobs (or return the sweep this Idempotency-Key made) and let the scheduler start
    what it can: (sweep record, created). 422 for a bad run, 429 if the jobs do not all fit the quotas."""
    settings = sweeps.settings
    where = "grid" if body.grid is not None else "runs"
    if body.size > settings.max_active_jobs_per_key:
        raise field_error((where,), f"{body.size:,} jobs, more than an API key may have queued or running "
                                    "at once (ZDL_MAX_ACTIVE_JOBS_PER_KEY="
                                    f"{settings.max_active_jobs_per_key})", body.size)
    params = body.combinations()
    blocks = sweep_blocks(body, len(params), len(alive_workers(sweeps.client, settings, settings.blocks_queue)),
                          settings.max_running_jobs_per_key)
    specs = [job_spec(body, run, i, blocks, sweeps) for i, run in enumerate(params)]
    request = body.model_dump(mode="json")
    try:
        sweep_id, created = sweeps.create(owner, request, specs, params, [result_bytes(s) for s in specs],
                                          idempotency_key)
    except QuotaExceeded as exc:
        raise HTTPException(429, str(exc)) from exc
    record = sweeps.get(sweep_id) if sweep_id is not None else None
    if record is None:
        raise HTTPException(409, f"Idempotency-Key {idempotency_key!r} was used for a job that is not (or no longer) "
                                 "part of a sweep")
    if not created:
        if record["request"] != request:
            raise HTTPException(409, f"Idempotency-Key {idempotency_key!r} was used for a different request body")
        return record, False
    try:
        scheduler.dispatch(sweeps.client, settings, send_to_coordinator(celery, settings))
    except Exception:  # the jobs are stored and queued: a coordinator's next heartbeat starts them
        log.exception("sweep %s: could not dispatch its jobs now", record["id"])
    return record, True


def sweep_blocks(body: SweepCreate, n_jobs: int, live_block_workers: int, running_per_key: int) -> int | str:
    """Block groups per step for the sweep's jobs. A sweep is many independent jobs: the workers are best used
    by jobs side by side, each job on a worker of its own (one group: a gang of one replica), rather than
    every job's step cut across all the workers, where a job's groups wait on one another each step. So
    "auto" becomes the workers shared out among the jobs that run at once (at most
    ZDL_MAX_RUNNING_JOBS_PER_KEY), at least 1; a number in the base is kept."""
    requested = body.base.gradient.blocks
    if requested != "auto":
        return requested
    return max(1, live_block_workers // max(1, min(n_jobs, running_per_key)))


def job_spec(body: SweepCreate, run: dict[str, Any], index: int, blocks: int | str,
             sweeps: SweepStore) -> dict[str, Any]:
    """The job body of one run: the base with the run's settings, checked and admitted like a posted job's."""
    spec = copy.deepcopy(body.base.model_dump(mode="json"))
    for name, value in {**run, "blocks": blocks}.items():
        put(spec, name, value)
    try:
        job = JobCreate.model_validate(spec)
        check_spec(job, sweeps.settings)
        stored = job.model_dump(mode="json")
        admit(stored, sweeps.jobs)
    except ValidationError as exc:
        raise _blame(exc.errors(), body, run, index, show_value=True) from None
    except RequestValidationError as exc:  # check_spec's and admit's messages name the value already
        raise _blame([{**e, "loc": tuple(e["loc"])[1:]} for e in exc.errors()], body, run, index) from None
    return stored


def _blame(errors: Any, body: SweepCreate, run: dict[str, Any], index: int,
           show_value: bool = False) -> RequestValidationError:
    """Errors of a run's job body, each moved to the field of the sweep request that caused it."""
    varied = {SETTING_PATHS[name]: name for name in run}
    moved = []
    for error in errors:
        loc = tuple(error["loc"])
        name = varied.get(loc) or varied.get(loc[:1])
        if name is None:
            where: tuple[Any, ...] = ("base", *loc)
        else:
            where = ("grid", name) if body.grid is not None else ("runs", index, name)
        if name is not None:
            msg = f"{error['msg']} (got {run[name]!r})" if show_value else error["msg"]
        else:  # the base's field, but only in this run: say which
            msg = f"{error['msg']} (in the run {describe(run)})"
        moved.append({"type": error["type"], "loc": ("body", *where), "msg": msg, "input": error.get("input")})
    return RequestValidationError(moved)


def summary(sweep: Record, jobs: list[Record | None]) -> SweepOut:
    """The public view of a sweep: its jobs' statuses and the results table, best first."""
    runs = [_row(i, job_id, params, job) for i, (job_id, params, job)
            in enumerate(zip(sweep["jobs"], sweep["params"], jobs, strict=True))]
    counts = {status: sum(r.status == status for r in runs) for status in (*STATUSES, "deleted")}
    ended = counts["deleted"] + sum(counts[s] for s in FINISHED)
    status: SweepStatus = ("finished" if ended == len(runs) else "queued" if counts["queued"] == len(runs)
                           else "running")
    runs.sort(key=_rank)
    request = SweepCreate.model_validate(sweep["request"])
    return SweepOut(
        id=sweep["id"], name=request.name, status=status,
        created_at=datetime.fromtimestamp(sweep["created_at"], tz=UTC), axes=request.axes, base=request.base,
        size=len(runs), counts=counts,
        progress=SweepProgress(iteration=sum(r.iteration for r in runs), total=sum(r.total for r in runs)),
        best=runs[0].job_id if runs and runs[0].status == "succeeded" else None, runs=runs,
        links=SweepLinks(self=f"/v1/sweeps/{sweep['id']}", cancel=f"/v1/sweeps/{sweep['id']}/cancel"))


def _row(index: int, job_id: str, params: dict[str, Any], job: Record | None) -> SweepRun:
    links = RunLinks(job=f"/v1/jobs/{job_id}", history=f"/v1/jobs/{job_id}/history")
    if job is None:
        return SweepRun(index=index, job_id=job_id, params=params, status="deleted", links=links)
    return SweepRun(index=index, job_id=job_id, params=params, status=job["status"],
                    diverged=bool(job.get("diverged")), error=job.get("error") or None,
                    iteration=job.get("iteration", 0), total=job.get("total", 0),
                    final_loss=_finite(job.get("loss")), train_acc=_finite(job.get("train_acc")),
                    test_acc=_finite(job.get("test_acc")), elapsed_s=job.get("elapsed_s"), links=links)


#: The table's order of outcomes: results first, then jobs still going, then those that ended without one.
_OUTCOME = {"succeeded": 0, "running": 1, "queued": 1, "cancelled": 2, "failed": 3, "deleted": 4}


def _rank(run: SweepRun) -> tuple[int, float, float, int]:
    """Best first: by outcome, then higher test accuracy, then lower final loss, then the sweep's order."""
    test_acc = -run.test_acc if run.test_acc is not None else math.inf
    loss = run.final_loss if run.final_loss is not None else math.inf
    return _OUTCOME[run.status], test_acc, loss, run.index


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
