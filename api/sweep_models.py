"""Request and response bodies of the sweeps API: a base job and the settings to vary, and the results table.

The settings a sweep can vary are named as in `zdl.train.TrainConfig` (`gradient` is the method), plus the
data set; `zdl.client.bodies.SETTING_PATHS` says where each one goes in a job body.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PlainValidator, WithJsonSchema, field_validator, model_validator

from api.models import JobCreate, JobStatus
from zdl.spec import Strict

#: zdl.client.bodies.SWEEP_SETTINGS (a test keeps them equal)
AxisName = Literal["learning_rate", "hidden_size", "batch_size", "weight_init_std", "seed", "gradient", "dataset"]

#: Values of one setting in a grid; the body-size limit bounds a list long before this does.
MAX_VALUES = 100
#: Entries of `runs`: more than any key may have queued at once (ZDL_MAX_ACTIVE_JOBS_PER_KEY, checked later).
MAX_RUNS = 1000


def _scalar(value: Any) -> int | float | str:
    """A setting's value as JSON gives it: a number or a name (true/false, lists and objects are mistakes)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a number or a name, got {value!r}")
    return value


def _first_repeat(items: list[Any]) -> int | None:
    """The index of the first item equal to an earlier one, or None; one pass (a set of canonical forms), so a
    long list costs linear time on the event loop. 1 and 1.0 are equal, as they are in a job body."""
    seen: set[Any] = set()
    for i, item in enumerate(items):
        key = tuple(sorted((k, _canonical(v)) for k, v in item.items())) if isinstance(item, dict) else \
            _canonical(item)
        if key in seen:
            return i
        seen.add(key)
    return None


def _canonical(value: Any) -> Any:
    return (type(value) is str, value)  # "1" and 1 differ; 1 and 1.0 hash alike, as they compare


Value = Annotated[int | float | str, PlainValidator(_scalar),
                  WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}]})]
Values = Annotated[list[Value], Field(min_length=1, max_length=MAX_VALUES)]
SweepStatus = Literal["queued", "running", "finished"]


class SweepCreate(Strict):
    """`base` is a job body (the book's run is `{"dataset": "mnist"}`); `grid` trains every combination of its
    values, `runs` each of its entries. Example: `{"base": {"dataset": "mnist", "training": {"iters": 500}},
    "grid": {"learning_rate": [0.01, 0.1, 1, 10], "hidden_size": [50, 100]}}` makes 8 jobs."""

    name: str | None = Field(default=None, max_length=100, description="a label for people; not used otherwise")
    base: JobCreate
    grid: dict[AxisName, Values] | None = Field(default=None, min_length=1, description="setting -> values")
    runs: list[dict[AxisName, Value]] | None = Field(default=None, min_length=1, max_length=MAX_RUNS,
                                                     description="one entry of settings per job")

    @field_validator("grid")
    @classmethod
    def _distinct_values(cls, grid: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        for axis, values in (grid or {}).items():
            repeated = _first_repeat(values)
            if repeated is not None:
                raise ValueError(f"{axis} has {values[repeated]!r} more than once: those runs would be identical")
        return grid

    @field_validator("runs")
    @classmethod
    def _distinct_runs(cls, runs: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, run in enumerate(runs or []):
            if not run:
                raise ValueError(f"entry {i} is empty: name the settings that run changes")
        repeated = _first_repeat(runs or [])
        if repeated is not None:
            raise ValueError(f"entry {repeated} repeats an earlier one: those runs would be identical")
        return runs

    @model_validator(mode="after")
    def _grid_or_runs(self) -> SweepCreate:
        if (self.grid is None) == (self.runs is None):
            raise ValueError("give either `grid` (every combination of its values) or `runs` (a list of settings)")
        return self

    @property
    def size(self) -> int:
        """How many jobs the sweep makes (computed without listing them: a grid may be huge)."""
        return math.prod(len(v) for v in self.grid.values()) if self.grid is not None else len(self.runs or [])

    @property
    def axes(self) -> list[str]:
        """The settings that vary, in the order given."""
        if self.grid is not None:
            return list(self.grid)
        return list(dict.fromkeys(name for run in self.runs or [] for name in run))

    def combinations(self) -> list[dict[str, Any]]:
        """Each job's settings: the grid's combinations (the last setting varying fastest) or the runs."""
        if self.grid is None:
            return [{str(name): value for name, value in run.items()} for run in self.runs or []]
        names = list(self.grid)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*self.grid.values())]


class RunLinks(BaseModel):
    job: str
    history: str


class SweepRun(BaseModel):
    """One row of the results table: a job, the settings it varied and where it got."""

    index: int = Field(description="its position in the grid (the last setting varying fastest) or the runs list")
    job_id: str
    params: dict[str, Any] = Field(description="the settings this job varies, by name")
    status: JobStatus | Literal["deleted"]
    diverged: bool = False
    error: str | None = None
    iteration: int = 0
    total: int = 0
    final_loss: float | None = Field(default=None, description="the latest mini-batch loss (null: none, or NaN)")
    train_acc: float | None = Field(default=None, description="the latest evaluation's")
    test_acc: float | None = None
    elapsed_s: float | None = None
    links: RunLinks


class SweepProgress(BaseModel):
    iteration: int = Field(description="iterations done, all jobs together")
    total: int


class SweepLinks(BaseModel):
    self: str
    cancel: str


class SweepOut(BaseModel):
    id: str
    name: str | None = None
    status: SweepStatus = Field(description="queued: no job has started; finished: every job has ended")
    created_at: datetime
    axes: list[str]
    base: JobCreate
    size: int
    counts: dict[str, int] = Field(description="jobs in each status (deleted: deleted or expired since)")
    progress: SweepProgress
    best: str | None = Field(default=None, description="the succeeded job with the best test accuracy")
    runs: list[SweepRun] = Field(description="best first: succeeded by test accuracy, then lower loss; then "
                                             "running or queued, cancelled, and failed (diverged among them)")
    links: SweepLinks


class SweepPage(BaseModel):
    items: list[SweepOut]
    total: int
    offset: int
    limit: int
