"""Request and response bodies of the jobs API; defaults are the book's run (section 4.5)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DatasetName = Literal["mnist", "fashion-mnist"]  # zdl.datasets.DATASETS (a test keeps them equal)
MethodName = Literal["numerical", "numerical-reference", "backprop"]  # zdl.engine.METHODS
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class Strict(BaseModel):
    """Unknown fields are errors: a typo such as `hiden_size` must not silently train the default."""

    model_config = ConfigDict(extra="forbid")


class ModelSpec(Strict):
    hidden_size: int = Field(default=50, ge=1, description="hidden units")
    weight_init_std: float = Field(default=0.01, ge=0, allow_inf_nan=False,
                                   description="scale of the initial weights")
    input_size: int | None = Field(default=None, ge=1, description="optional; must match the dataset (784)")
    output_size: int | None = Field(default=None, ge=1, description="optional; must match the dataset (10)")


class TrainingSpec(Strict):
    iters: int = Field(default=10000, ge=1, description="iterations (mini-batches)")
    batch_size: int = Field(default=100, ge=1)
    learning_rate: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


class GradientSpec(Strict):
    method: MethodName = Field(default="numerical", description="numerical (fast exact), numerical-reference "
                                                                "(the book's procedure) or backprop")
    blocks: int | Literal["auto"] = Field(default="auto",
                                          description="block groups per step; auto: one per live block worker")

    @field_validator("blocks", mode="before")
    @classmethod
    def _positive_or_auto(cls, value: Any) -> Any:
        """One clear message instead of one per member of the union."""
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(f'must be a positive integer or "auto", got {value!r}')


class JobCreate(Strict):
    """The book's run is `{"dataset": "mnist"}`: every other field has the book's default."""

    model: ModelSpec = Field(default_factory=ModelSpec)
    dataset: DatasetName
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    gradient: GradientSpec = Field(default_factory=GradientSpec)


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
