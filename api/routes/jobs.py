"""/v1/jobs: submit, read, list, follow, cancel and delete training jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api import events, jobs
from api.auth import OwnerDep, is_admin, require_owner
from api.deps import (
    AsyncRedisDep,
    BlockWorkersDep,
    EventHubDep,
    JobDep,
    JobId,
    SettingsDep,
    StoreDep,
    valid_job_id,
)
from api.models import ErrorOut, HistoryOut, JobCreate, JobOut, JobPage, JobStatus
from api.stream_hub import TooManyStreams
from worker.scheduling.queue_order import position_of

#: Every route needs a valid key (require_owner); a job of another key is a 404 like a missing one.
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(require_owner)],
                   responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}})


@router.post("", status_code=201, response_model=JobOut, responses={
    409: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}, 429: {"model": ErrorOut}})
def create_job(
    body: JobCreate,
    store: StoreDep,
    owner: OwnerDep,
    request: Request,
    response: Response,
    live: BlockWorkersDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobOut:
    """Submit a training job; a retried POST with the same Idempotency-Key returns the same job. A job the
    cluster cannot run (too much memory per block group, too much compute) is a 422 with its estimate."""
    record, created = jobs.submit(store, request.app.state.job_queue, body, owner, idempotency_key)
    response.headers["Location"] = f"/v1/jobs/{record['id']}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return jobs.job_out(record, store.settings, live)


@router.get("", response_model=JobPage)
def list_jobs(
    store: StoreDep,
    settings: SettingsDep,
    owner: OwnerDep,
    live: BlockWorkersDep,
    status: JobStatus | None = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=10**9)] = 20,
) -> JobPage:
    """Your jobs (this API key's), newest first, optionally only those in one status."""
    limit = min(limit, settings.max_page_size)
    total, records = store.list(owner, status, offset, limit)
    return JobPage(items=jobs.readable_jobs(records, settings, live), total=total, offset=offset, limit=limit)


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job: JobDep, settings: SettingsDep, live: BlockWorkersDep, request: Request) -> JobOut:
    """Status, progress, latest loss and accuracies, timings, the estimate, the error of a failed job, and
    a queued job's place in the queue with its estimated start."""
    out = jobs.job_out(job, settings, live)
    if job["status"] != "queued":
        return out
    place, start = await run_in_threadpool(position_of, request.app.state.redis, settings, job["id"], live)
    return out.model_copy(update={"queue_position": place, "estimated_start_s": start})


@router.get("/{job_id}/history", response_model=HistoryOut)
def get_history(job: JobDep, store: StoreDep) -> HistoryOut:
    """Per-iteration loss and per-epoch accuracies (so far, while the job runs)."""
    return HistoryOut.model_validate(store.history(job["id"]))


@router.get("/{job_id}/weights", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}}, "description": ".npz with W1 b1 W2 b2"},
    409: {"model": ErrorOut}})
def get_weights(job: JobDep, store: StoreDep) -> Response:
    """The trained weights as an .npz (W1 b1 W2 b2) that `zdl.io.load_weights` reads back."""
    data = store.weights(job["id"]) if job["status"] == "succeeded" else None
    if data is None:
        raise HTTPException(409, f"Job is {job['status']}: weights exist only for a succeeded job")
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{job["id"]}-weights.npz"'})


@router.get("/{job_id}/events", response_class=EventSourceResponse)
async def get_events(job_id: JobId, client: AsyncRedisDep, settings: SettingsDep,
                     owner: OwnerDep, request: Request, hub: EventHubDep) -> EventSourceResponse:
    """Server-Sent Events: a `status` snapshot, then `progress` and `status` events until the job ends."""
    whose = None if is_admin(request, owner) else owner
    snapshot = await events.snapshot(client, settings, valid_job_id(job_id), whose)
    if snapshot is None:
        raise HTTPException(404, "Job not found")
    try:
        slot = hub.reserve(owner)
    except TooManyStreams as exc:
        raise HTTPException(429, str(exc)) from exc
    return EventSourceResponse(events.stream(client, settings, hub, slot, job_id, snapshot), ping=15,
                               background=BackgroundTask(slot.release))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job: JobDep, store: StoreDep, live: BlockWorkersDep) -> JobOut:
    """Cancel a job: a queued one at once, a running one at its next iteration; finished ones are left as they are."""
    record = store.request_cancel(job["id"])
    if record is None:
        raise HTTPException(404, "Job not found")
    return jobs.job_out(record, store.settings, live)


@router.delete("/{job_id}", status_code=204, responses={409: {"model": ErrorOut}})
def delete_job(job: JobDep, store: StoreDep) -> Response:
    """Delete a finished job and everything stored for it."""
    outcome = store.delete(job["id"])
    if outcome == "missing":
        raise HTTPException(404, "Job not found")
    if outcome == "busy":
        raise HTTPException(409, f"Job is {job['status']}: only finished jobs can be deleted; "
                                 "cancel it first")
    return Response(status_code=204)
