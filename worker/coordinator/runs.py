"""One run of a job on its coordinator, by either protocol: the same shape for both, `(job, send, reporter) ->
(final parameters, history)`, so the job's life around them (`worker.coordinator.lifecycle`) is written once.

Both run `zdl.train.Trainer`, the very loop `zdl train` runs, from the job's last checkpoint if it resumes:
the fan-out here, with each step's gradient computed by block loops; a gang on the block workers, each
replica running the loop itself. Either way the weights are bit-identical to a local run's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import redis
from numpy.typing import NDArray

from worker.coordinator.reporter import StepReporter, StepTimings
from worker.fanout.gradient import FanoutGradient, StartLoops
from worker.gang.run import GangRun, StartReplicas
from worker.state.checkpoints import resume
from worker.state.job_store import JobStore
from worker.state.transfer import StepData
from zdl.datasets import dataset_shape, load_mnist
from zdl.engine import param_shapes
from zdl.spec import JobSpec
from zdl.train import Trainer

Reporter = Callable[[StepTimings | None], StepReporter]
Result = tuple[dict[str, NDArray[np.float64]], dict[str, Any]]


@dataclass(frozen=True)
class Senders:
    """How a coordinator starts work on the block workers: block loops (fan-out) or a gang's replicas."""

    loops: StartLoops
    replicas: StartReplicas


@dataclass(frozen=True)
class JobRun:
    """A job this coordinator has just started (or resumed) a run of: its spec, its block groups per step,
    the run's number, whether it resumes, the block workers alive when it started, and when the job first
    started (unix time; None: now), from which its wall-clock limit counts."""

    job_id: str
    owner: str
    spec: JobSpec
    blocks: int
    run: int
    resuming: bool
    live: int
    started_at: float | None
    client: redis.Redis
    data: StepData
    store: JobStore

    @property
    def gang(self) -> bool:
        """Whether it runs as a gang: one replica per group, every group on a worker of its own."""
        return 0 < self.blocks <= min(self.live, self.spec.model.hidden_size)


def run_gang(job: JobRun, send: Senders, reporter: Reporter) -> Result:
    """The job's remaining steps as turns of a gang."""
    state = resume(job.client, job.store.settings, job.job_id) if job.resuming else None
    gang = GangRun(job.client, job.data, job.store.settings, job.job_id, job.owner, job.run, job.spec, job.blocks,
                   send.replicas, reporter)
    final = gang.run(state)
    history = final.history.to_dict()
    history["config"] = asdict(job.spec.train_config())
    return final.params, history


def run_fanout(job: JobRun, send: Senders, reporter: Reporter) -> Result:
    """The job's remaining steps here, each step's gradient fanned out to block loops (backprop: computed here)."""
    trainer, fanout = _build(job, send.loops)
    try:
        if job.resuming:
            state = resume(job.client, job.store.settings, job.job_id)
            if state is not None:
                trainer.restore(state)
            if fanout is not None:
                fanout.step = 0 if state is None else state.step
        if fanout is not None:
            fanout.run = job.run
        report = reporter(fanout)
        if fanout is not None:  # the lease and the deadline are checked while it waits for blocks, too
            fanout.check = partial(_check_while_waiting, report, fanout)
        while not trainer.done:
            report(trainer.step(), trainer)
        return trainer.net.params, trainer.history.to_dict()
    finally:
        if fanout is not None:
            try:
                fanout.close()
            except redis.RedisError:
                pass  # the step keys expire by themselves


def _check_while_waiting(report: StepReporter, fanout: FanoutGradient) -> None:
    report.while_waiting(fanout.step)


def _build(job: JobRun, send: StartLoops) -> tuple[Trainer, FanoutGradient | None]:
    """The trainer for the job, with a fan-out gradient unless the method is backprop (computed here)."""
    config, dataset = job.spec.train_config(), job.spec.dataset
    _, output_size = dataset_shape(dataset)
    trainer = Trainer(load_mnist(dataset=dataset), config, output_size=output_size)
    if config.gradient == "backprop":
        return trainer, None
    fanout = FanoutGradient(job.client, job.data, job.store.settings, job.job_id, param_shapes(trainer.net.params),
                            config.gradient, job.blocks, send, cancel_record=job.store.keys(job.job_id).record,
                            owner=job.owner)
    trainer.gradient_fn = fanout
    return trainer, fanout
