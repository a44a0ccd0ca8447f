"""Request and response bodies of the jobs API; a job's spec is `zdl.spec.JobSpec` (the book's run by default)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from zdl.spec import JobSpec

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobCreate(JobSpec):
    """The book's run is `{"dataset": "mnist"}`: every other field has the book's default."""


class Progress(BaseModel):
    iteration: int = 0
    total: int
    iterations_per_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float | None = None


class Latest(BaseModel):
    loss: float | None = None
    train_acc: float | None = None
    test_acc: float | None = None


class Timings(BaseModel):
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    gradient_s: float | None = Field(default=None, description="time spent computing gradients")
    fanout_overhead_ms: float | None = Field(default=None, description="mean per iteration: gradient wall time "
                                                                       "minus the slowest block's compute time")


class Estimate(BaseModel):
    """What the job costs the cluster (worker/scheduling/plan.py, from zdl.engine.cost)."""

    core_seconds: float = Field(description="the whole job's compute: every iteration and evaluation, one core")
    group_memory_mb: float = Field(description="a block worker's memory while it computes one block group")
    wall_s: float = Field(description="expected wall time with the block workers alive now")
    block_workers: int = Field(description="block workers alive now")


class Links(BaseModel):
    self: str
    history: str
    weights: str
    events: str
    cancel: str


class JobOut(BaseModel):
    id: str
    status: JobStatus
    spec: JobCreate
    progress: Progress
    latest: Latest
    timings: Timings
    blocks: int | None = Field(default=None,
                               description="block groups per step (0: computed in the coordinator)")
    worker: str | None = None
    runs: int | None = Field(default=None, description="coordinator runs: more than 1 if the job was resumed")
    resumed_from: int | None = Field(default=None, description="the checkpoint's iteration of the last resume")
    error: str | None = None
    diverged: bool = Field(default=False, description="the loss became NaN or infinite, and the job was stopped")
    estimate: Estimate | None = None
    sweep: str | None = Field(default=None, description="the id of the sweep that made this job, if one did")
    cpu_seconds: float | None = Field(default=None, description="CPU time its work has used so far, as measured by "
                                                                "the coordinator and the block workers")
    stored_bytes: int | None = Field(default=None, description="bytes of its stored results (weights and history)")
    queue_position: int | None = Field(default=None, description="a queued job's place in the order the fair "
                                                                 "scheduler would start jobs now (1: next); only in "
                                                                 "GET /v1/jobs/{id}")
    estimated_start_s: float | None = Field(default=None, description="a queued job's estimated wait until it starts, "
                                                                      "in seconds (none while no coordinator is alive)")
    links: Links

    @classmethod
    def from_record(cls, record: dict[str, Any], estimate: Estimate | None = None) -> JobOut:
        """The public view of a stored job record (worker/state/job_store.py)."""
        path = f"/v1/jobs/{record['id']}"
        return cls(
            id=record["id"], status=record["status"], spec=JobCreate.model_validate(record["spec"]),
            progress=Progress(**_pick(record, Progress)), latest=Latest(**_pick(record, Latest)),
            timings=Timings(**{**_pick(record, Timings), **_times(record)}),
            blocks=record.get("blocks"), worker=record.get("worker"), runs=record.get("runs"),
            resumed_from=record.get("resumed_from"), error=record.get("error") or None,
            diverged=bool(record.get("diverged")), estimate=estimate, sweep=record.get("sweep"),
            cpu_seconds=record.get("cpu_seconds"), stored_bytes=record.get("stored_bytes"),
            links=Links(self=path, history=f"{path}/history", weights=f"{path}/weights", events=f"{path}/events",
                        cancel=f"{path}/cancel"),
        )


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    offset: int
    limit: int


class HistoryOut(BaseModel):
    """zdl.history.History: loss[i] after iteration i; accuracies measured after iterations epoch_iters[k]."""

    loss: list[float]
    epoch_iters: list[int]
    train_acc: list[float]
    test_acc: list[float]
    wall_time: float
    gradient_time: float
    config: dict[str, Any]


class ErrorOut(BaseModel):
    detail: str
    errors: list[dict[str, Any]] | None = None
    request_id: str | None = Field(default=None, description="on server-side failures: the id of the log entry")


def _pick(record: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    return {name: record[name] for name in model.model_fields if name in record}


def _times(record: dict[str, Any]) -> dict[str, datetime]:
    names = ("created_at", "started_at", "finished_at")
    return {n: datetime.fromtimestamp(record[n], tz=UTC) for n in names if record.get(n) is not None}
