"""What a job will cost the cluster, planned from `zdl.engine.cost` before it runs: the API refuses what it
cannot finish, shows the estimate, and the coordinator cuts each step into groups from the same plan.

Estimates are in this machine's core-seconds (`zdl.engine.speed`). A step is cut into enough block groups
that each takes about `block_group_target_s` of one core, so block workers switch between jobs (and see a
cancel) that often, whatever the job's size; the bits do not depend on the grouping. A job is refused
when one group would not fit a worker's memory, when its total compute is over `max_job_core_hours`, or
when even `max_blocks` groups would each be too long to take turns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.settings import Settings
from zdl.datasets import PUBLISHED_SIZES, dataset_shape
from zdl.engine.cost import MachineSpeed, iteration_cost

#: Resident memory of an idle block worker (Celery, NumPy, Numba and the compiled kernels), measured on the
#: project's VM; a group's own memory comes on top of it.
WORKER_BASELINE_MB = 160.0

#: Per step, the fan-out's own time (publish, notify, gather) on loopback, for the expected wall time.
FANOUT_OVERHEAD_S = 0.003

#: A group may take at most this many times `block_group_target_s`: past it, turn-taking would cut it off.
LONGEST_GROUP_FACTOR = 4.0


@dataclass(frozen=True)
class JobPlan:
    """A job's estimate, in the units the API shows."""

    groups: int  # block groups per step (0: backprop, computed in the coordinator)
    step_core_s: float  # one iteration's gradient, all groups, one core each
    total_core_s: float  # the whole job: every iteration and every accuracy evaluation
    group_memory_mb: float  # one block worker's memory while it computes the largest group
    parallel: int  # cores the gradient can use at once with the live block workers

    def wall_s(self, iters: int) -> float:
        """The expected wall time at `parallel` cores (the fan-out's overhead included)."""
        if self.groups == 0:
            return self.total_core_s
        step = self.step_core_s / self.parallel + FANOUT_OVERHEAD_S
        return self.total_core_s - iters * self.step_core_s + iters * step


def plan(spec: Mapping[str, Any], settings: Settings, live_block_workers: int) -> JobPlan:
    """The plan of a job spec (as the API stores it) with the block workers alive now."""
    model, training, method = spec["model"], spec["training"], spec["gradient"]["method"]
    dataset, hidden, batch, iters = spec["dataset"], model["hidden_size"], training["batch_size"], training["iters"]
    inputs, outputs = dataset_shape(dataset)
    speed = machine_speed_of(settings)
    one_group = iteration_cost(inputs, hidden, outputs, batch, method, dataset, speed=speed)
    groups = 0
    cost = one_group
    if method != "backprop":
        requested = spec["gradient"].get("blocks", "auto")
        wanted = max(live_block_workers, 1) if requested == "auto" else int(requested)
        needed = math.ceil(one_group.compute_core_seconds / settings.block_group_target_s)
        groups = max(1, min(max(wanted, needed), settings.max_blocks))
        cost = iteration_cost(inputs, hidden, outputs, batch, method, dataset, n_groups=groups, speed=speed)
    train_size, test_size = PUBLISHED_SIZES[dataset]
    evaluations = math.ceil(iters / max(train_size / batch, 1))
    total = iters * cost.compute_core_seconds + \
        evaluations * (train_size + test_size) * cost.evaluation_core_seconds_per_sample
    parallel = max(1, min(max(live_block_workers, 1) * settings.block_threads, max(groups, 1)))
    memory = WORKER_BASELINE_MB + cost.group_memory_bytes / 2**20
    return JobPlan(groups, cost.compute_core_seconds, total, memory, parallel)


def machine_speed_of(settings: Settings) -> MachineSpeed:
    """The settings' `machine_speed` (for every kind of work), else this machine's as measured (once per
    process)."""
    if settings.machine_speed is not None:
        return MachineSpeed(settings.machine_speed, settings.machine_speed)
    from zdl.engine.speed import machine_speed

    return machine_speed()


def refusal(job: JobPlan, spec: Mapping[str, Any], settings: Settings) -> tuple[tuple[str, ...], str] | None:
    """None if the cluster can run the job, else (the field to change, a message with the estimate, the
    limit and what to change)."""
    method = spec["gradient"]["method"]
    if job.groups and job.group_memory_mb > settings.worker_memory_mb:
        return ("training", "batch_size"), (
            f"one block group of this job needs about {job.group_memory_mb:.0f} MB, over a block worker's "
            f"{settings.worker_memory_mb} MB (ZDL_WORKER_MEMORY_MB); use a smaller batch_size or hidden_size")
    limit_s = 3600 * settings.max_job_core_hours
    if job.total_core_s > limit_s:
        hint = "method numerical (the same gradient, exact, thousands of times faster) or fewer iterations" \
            if method == "numerical-reference" else "fewer iterations, a smaller batch_size or hidden_size"
        return ("training", "iters"), (
            f"this job would compute for about {_hours(job.total_core_s)} core-hours, over the limit of "
            f"{settings.max_job_core_hours:g} (ZDL_MAX_JOB_CORE_HOURS); use {hint}")
    longest = settings.block_group_target_s * LONGEST_GROUP_FACTOR
    if job.groups and job.step_core_s / job.groups > longest:
        return ("model", "hidden_size"), (
            f"one iteration of this job computes for about {job.step_core_s:.0f} core-seconds; even cut into "
            f"{job.groups} block groups (ZDL_MAX_BLOCKS) each would take {job.step_core_s / job.groups:.1f} s, "
            f"over the {longest:g} s after which block workers turn to other jobs; use a smaller hidden_size or "
            f"batch_size{', or method numerical' if method == 'numerical-reference' else ''}")
    return None


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.3g}"
