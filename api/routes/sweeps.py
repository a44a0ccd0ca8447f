"""/v1/sweeps: train many variations of one job at once, follow them together, compare the results."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response

from api import sweeps
from api.auth import OwnerDep, require_owner
from api.deps import JOB_ID_PATTERN, SettingsDep, StoreDep
from api.models import ErrorOut
from api.sweep_models import SweepCreate, SweepOut, SweepPage
from worker.state.job_store import Record
from worker.state.sweep_store import SweepStore

#: Every route needs a valid key; another key's sweep is a 404 like a missing one.
router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], dependencies=[Depends(require_owner)],
                   responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}})

SweepId = Annotated[str, Path(description="the id POST /v1/sweeps returned (32 hex digits)")]


async def get_sweeps(store: StoreDep) -> SweepStore:
    return SweepStore(store)


SweepsDep = Annotated[SweepStore, Depends(get_sweeps)]


def get_sweep(sweep_id: SweepId, sweeps: SweepsDep, owner: OwnerDep) -> Record:
    """The caller's sweep record, or 404 (also for an id the store could not have made, or another key's sweep)."""
    record = sweeps.get(sweep_id) if JOB_ID_PATTERN.fullmatch(sweep_id) else None
    if record is None or record.get("owner") != owner:
        raise HTTPException(404, "Sweep not found")
    return record


SweepDep = Annotated[Record, Depends(get_sweep)]


@router.post("", status_code=201, response_model=SweepOut, responses={
    409: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}, 429: {"model": ErrorOut}})
def create_sweep(
    body: SweepCreate,
    sweeps_store: SweepsDep,
    owner: OwnerDep,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> SweepOut:
    """Create one job per combination of the grid's values (or per entry of `runs`), all or none."""
    record, created = sweeps.create(sweeps_store, request.app.state.celery, body, owner, idempotency_key)
    response.headers["Location"] = f"/v1/sweeps/{record['id']}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return sweeps.summary(record, sweeps_store.job_records(record))


@router.get("", response_model=SweepPage)
def list_sweeps(
    sweeps_store: SweepsDep,
    settings: SettingsDep,
    owner: OwnerDep,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=10**9)] = 20,
) -> SweepPage:
    """Your sweeps (this API key's), newest first."""
    limit = min(limit, settings.max_page_size)
    total, records = sweeps_store.list(owner, offset, limit)
    items = [sweeps.summary(r, sweeps_store.job_records(r)) for r in records]
    return SweepPage(items=items, total=total, offset=offset, limit=limit)


@router.get("/{sweep_id}", response_model=SweepOut)
def get_sweep_status(sweep: SweepDep, sweeps_store: SweepsDep) -> SweepOut:
    """Each job's status and the results table: final loss and train/test accuracy, best first."""
    return sweeps.summary(sweep, sweeps_store.job_records(sweep))


@router.post("/{sweep_id}/cancel", response_model=SweepOut)
def cancel_sweep(sweep: SweepDep, sweeps_store: SweepsDep) -> SweepOut:
    """Cancel every job of the sweep: queued ones at once, running ones at their next iteration."""
    sweeps_store.cancel(sweep)
    return sweeps.summary(sweep, sweeps_store.job_records(sweep))


@router.delete("/{sweep_id}", status_code=204, responses={409: {"model": ErrorOut}})
def delete_sweep(sweep: SweepDep, sweeps_store: SweepsDep) -> Response:
    """Delete the sweep and all its jobs, once every one of them has finished."""
    if sweeps_store.delete(sweep) == "busy":
        raise HTTPException(409, "Some of the sweep's jobs are queued or running: only a finished sweep can be "
                                 "deleted; cancel it first")
    return Response(status_code=204)
