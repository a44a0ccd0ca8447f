"""/v1/jobs/{id}/log: the job's event log, for its owner (what happened to it and why)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require_owner
from api.deps import JobDep, RedisDep, SettingsDep
from api.models import ErrorOut
from worker.state import job_log

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(require_owner)],
                   responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}})


class JobEvent(BaseModel):
    """One entry: when (unix time), what (queued, started, checkpoint, replica_lost, resumed, cancel_asked,
    finished), and its details (worker, mode, groups, block_workers, iteration, turn, replicas, from_iteration,
    why, status)."""

    model_config = ConfigDict(extra="allow")

    time: float
    event: str


class JobLogOut(BaseModel):
    job_id: str
    events: list[JobEvent] = Field(description=f"oldest first; at most {job_log.MAX_EVENTS}")


@router.get("/{job_id}/log", response_model=JobLogOut)
def get_job_log(job: JobDep, client: RedisDep, settings: SettingsDep) -> dict[str, Any]:
    """The job's events: queued, started where and how, checkpoints, resumed and why, cancel asked, finished."""
    return {"job_id": job["id"], "events": job_log.read(client, settings, job["id"])}
