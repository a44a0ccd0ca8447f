"""A running job's bookkeeping, and the checks that end it early: cancel, divergence, its time limit, a stop.

Writes go out in batches (loss, epochs, progress, metrics, an event): one Redis round trip, which also
reads the cancel flag, every `progress_interval_s`, after every evaluation and at the last step, so a job
of 50 iterations/s does not pay a round trip per iteration; the record's progress is at most that old,
and a cancel is seen within that (or, during a long step, by the fan-out gradient while it waits).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from worker.scheduling.recovery import Lease, LeaseLost
from worker.state import stats
from worker.state.cancel import cancelled
from worker.state.checkpoints import queue_checkpoint
from worker.state.errors import CoordinatorStopping, JobCancelled, JobStopped
from worker.state.job_store import JobStore
from zdl.history import History
from zdl.train import Progress, TrainerState


class StepTimings(Protocol):
    """Where a step's times come from: a fan-out gradient, or a gang's reports."""

    @property
    def last_overhead_s(self) -> float: ...

    @property
    def last_block_seconds(self) -> list[float]: ...


class TrainerView(Protocol):
    """What the reporter reads of a run: its history, and its state to checkpoint (None: none to checkpoint yet;
    a gang's, stopping before replica 0 sent one)."""

    @property
    def history(self) -> History: ...

    def state(self) -> TrainerState | None: ...


class StepReporter:
    """Called after every training step with its progress; raises to end the run (see the module docstring).

    started_at: the job's first start (unix time), from which its wall-clock limit counts.
    stopping: whether this process has been asked to stop (the job is then checkpointed and resumes elsewhere).
    """

    def __init__(self, store: JobStore, job_id: str, owner: str, fanout: StepTimings | None,
                 lease: Lease | None = None, started_at: float | None = None,
                 stopping: Callable[[], bool] = lambda: False, metered: Callable[[], None] = lambda: None) -> None:
        """metered: called at each write (the coordinator's CPU meter, worker/state/usage.py)."""
        self.store, self.job_id, self.owner, self.fanout, self.lease = store, job_id, owner, fanout, lease
        self.metered = metered
        settings = store.settings
        self.checkpoint_every = settings.checkpoint_every
        self.interval_s = settings.progress_interval_s
        self.deadline = (started_at or time.time()) + settings.max_job_seconds
        self.stopping = stopping
        self.began = self.last_flush = time.monotonic()
        self.losses: list[float] = []
        self.epochs: list[dict[str, Any]] = []
        self.overheads: list[float] = []
        self.block_seconds: list[float] = []
        self.overhead_total_s = 0.0
        self.accuracies: dict[str, float | None] = {}  # the latest evaluation's, repeated in every event

    def __call__(self, progress: Progress, trainer: TrainerView) -> None:
        """Note `progress` and write if a batch (or a checkpoint) is due."""
        if self.lease is not None and self.lease.lost.is_set():
            raise LeaseLost(self.job_id)
        self.losses.append(progress.loss)
        if self.fanout is not None:
            self.overheads.append(self.fanout.last_overhead_s)
            self.block_seconds.extend(self.fanout.last_block_seconds)
            self.overhead_total_s += self.fanout.last_overhead_s
        if progress.test_acc is not None:
            self.accuracies = {"train_acc": progress.train_acc, "test_acc": progress.test_acc}
            self.epochs.append({"iteration": trainer.history.epoch_iters[-1], **self.accuracies})
        now = time.monotonic()
        diverged = not math.isfinite(progress.loss)
        stopping = self.stopping()
        checkpoint = stopping or progress.iteration % self.checkpoint_every == 0 and progress.iteration < progress.total
        if checkpoint or diverged or self.epochs or progress.iteration == progress.total or \
                now - self.last_flush >= self.interval_s:
            self.last_flush = now
            if self.flush(progress, trainer, now - self.began, checkpoint):
                raise JobCancelled(self.job_id)
        if diverged:
            raise JobStopped(f"diverged: the loss became {progress.loss} at iteration {progress.iteration}; "
                             "try a smaller learning rate or initial weight scale", diverged=1)
        self._check_deadline(progress.iteration)
        if stopping:
            raise CoordinatorStopping(self.job_id)

    def while_waiting(self, iteration: int) -> None:
        """The checks that cannot wait for a step to end (a step may wait on stopped workers): the lease
        and the deadline."""
        if self.lease is not None and self.lease.lost.is_set():
            raise LeaseLost(self.job_id)
        self._check_deadline(iteration)

    def _check_deadline(self, iteration: int) -> None:
        if time.time() > self.deadline:
            limit = self.store.settings.max_job_seconds
            raise JobStopped(f"stopped at iteration {iteration}: the job ran for longer than its limit "
                             f"of {limit:g} s (ZDL_MAX_JOB_SECONDS)")

    def flush(self, progress: Progress, trainer: TrainerView, elapsed: float, checkpoint: bool = False) -> bool:
        """Write the batch, with a checkpoint of the trainer if asked, in the same round trip (a gang's checkpoint
        when stopping may be of an earlier step: a run resumed from it forgets the losses recorded after it);
        True if a cancel was requested."""
        rate = progress.iteration / elapsed if elapsed > 0 else 0.0
        fields: dict[str, Any] = {
            "iteration": progress.iteration, "loss": progress.loss, "iterations_per_s": rate,
            "eta_s": (progress.total - progress.iteration) / rate if rate > 0 else None,
            "elapsed_s": trainer.history.wall_time, "gradient_s": trainer.history.gradient_time, **self.accuracies,
        }
        if self.fanout is not None:
            fields["fanout_overhead_ms"] = 1000 * self.overhead_total_s / progress.iteration
        event = {**{k: v for k, v in fields.items() if v is not None and _finite(v)}, "total": progress.total}
        settings = self.store.settings
        with self.store.client.pipeline(transaction=False) as pipe:
            pipe.incrby(stats.iterations_key(settings), len(self.losses))
            pipe.incrby(stats.iterations_key(settings, self.owner), len(self.losses))
            stats.fanout_overhead_seconds(settings).observe(pipe, *self.overheads)
            stats.block_seconds(settings).observe(pipe, *self.block_seconds)
            if checkpoint and (state := trainer.state()) is not None:
                queue_checkpoint(pipe, settings, self.job_id, state)
            self.store.record_progress(pipe, self.job_id, self.losses, self.epochs, fields, event)
            cancel_flag = pipe.execute()[-1]
        self.losses, self.epochs, self.overheads, self.block_seconds = [], [], [], []
        self.metered()
        return cancelled(cancel_flag)


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
