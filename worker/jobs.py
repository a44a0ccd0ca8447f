"""Running one job: take its lease, load its data, run zdl's training loop with the fan-out gradient, store results.

The loop is `zdl.train.Trainer`, the very loop `zdl train` runs; only its gradient function differs
(block loops on Celery workers instead of local processes), which is what makes the weights bit-identical. A job found
`running` without a live coordinator resumes from its last checkpoint (see worker/recovery.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import redis

from worker import stats
from worker.coordinator import BlockFailed, FanoutGradient, JobCancelled, StartLoops
from worker.heartbeat import alive_workers
from worker.recovery import Lease, LeaseLost, load_checkpoint, queue_checkpoint, rewind_progress
from worker.store import JobStore
from worker.transfer import StepData
from zdl.datasets import DatasetError, DatasetNotFoundError, dataset_shape, load_mnist
from zdl.engine import param_shapes
from zdl.io import weights_bytes
from zdl.train import Progress, TrainConfig, Trainer

log = logging.getLogger(__name__)


def train_config(spec: Mapping[str, Any]) -> TrainConfig:
    """The zdl TrainConfig a job spec (as the API stored it) asks for."""
    model, training = spec["model"], spec["training"]
    return TrainConfig(
        hidden_size=model["hidden_size"], weight_init_std=model["weight_init_std"], iters=training["iters"],
        batch_size=training["batch_size"], learning_rate=training["learning_rate"], seed=training["seed"],
        gradient=spec["gradient"]["method"],
    )


def resolve_blocks(requested: int | str, live_block_workers: int) -> int:
    """`auto` is one group per live block worker (at least one); a number is taken as given."""
    return max(live_block_workers, 1) if requested == "auto" else int(requested)


class StepReporter:
    """A running job's bookkeeping, written in batches: loss, epochs, progress, metrics and an event.

    A batch goes out (one Redis round trip, which also reads the cancel flag) every `progress_interval_s`,
    after every evaluation and at the last step, so a job of 50 iterations/s does not pay a round
    trip per iteration; the record's progress is at most that old, and a cancel is seen within that
    (or, during a long step, by the fan-out gradient while it waits).
    """

    def __init__(self, store: JobStore, job_id: str, fanout: FanoutGradient | None, lease: Lease | None = None) -> None:
        self.store, self.job_id, self.fanout, self.lease = store, job_id, fanout, lease
        self.checkpoint_every = store.settings.checkpoint_every
        self.interval_s = store.settings.progress_interval_s
        self.began = self.last_flush = time.monotonic()
        self.losses: list[float] = []
        self.epochs: list[dict[str, Any]] = []
        self.overheads: list[float] = []
        self.block_seconds: list[float] = []
        self.overhead_total_s = 0.0
        self.accuracies: dict[str, float | None] = {}  # the latest evaluation's, repeated in every event

    def __call__(self, progress: Progress, trainer: Trainer) -> bool:
        """Note `progress`, write if a batch (or a checkpoint) is due; True if the job has been asked to stop."""
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
        checkpoint = progress.iteration % self.checkpoint_every == 0 and progress.iteration < progress.total
        if not (checkpoint or self.epochs or progress.iteration == progress.total
                or now - self.last_flush >= self.interval_s):
            return False
        self.last_flush = now
        return self.flush(progress, trainer, now - self.began, checkpoint)

    def flush(self, progress: Progress, trainer: Trainer, elapsed: float, checkpoint: bool = False) -> bool:
        """Write the batch, with a checkpoint of the trainer if asked (in the same round trip, so the
        checkpoint's step always equals the number of losses recorded)."""
        rate = progress.iteration / elapsed if elapsed > 0 else 0.0
        fields: dict[str, Any] = {
            "iteration": progress.iteration, "loss": progress.loss, "iterations_per_s": rate,
            "eta_s": (progress.total - progress.iteration) / rate if rate > 0 else None,
            "elapsed_s": trainer.history.wall_time, "gradient_s": trainer.history.gradient_time, **self.accuracies,
        }
        if self.fanout is not None:
            fields["fanout_overhead_ms"] = 1000 * self.overhead_total_s / progress.iteration
        event = {**{k: v for k, v in fields.items() if v is not None}, "total": progress.total}
        settings = self.store.settings
        with self.store.client.pipeline(transaction=False) as pipe:
            pipe.incrby(stats.iterations_key(settings), len(self.losses))
            stats.fanout_overhead_seconds(settings).observe(pipe, *self.overheads)
            stats.block_seconds(settings).observe(pipe, *self.block_seconds)
            if checkpoint:
                queue_checkpoint(pipe, settings, self.job_id, trainer.state())
            self.store.record_progress(pipe, self.job_id, self.losses, self.epochs, fields, event)
            cancel_flag = pipe.execute()[-1]
        self.losses, self.epochs, self.overheads, self.block_seconds = [], [], [], []
        return cancel_flag == b"1"


def run_job(job_id: str, *, client: redis.Redis, data: StepData, store: JobStore, send: StartLoops,
            worker: str) -> str | None:
    """Run (or resume) the job to its end; returns the final status, None if the job was not this worker's
    to run, or "interrupted" if Redis (either one) went away (the job resumes from its checkpoint once it
    is back). client: the main Redis; data: where step data goes."""
    lease = Lease(client, store.settings, job_id)
    try:
        if not lease.acquire():
            log.info("job %s: another process coordinates it; nothing to do", job_id)
            return None
        return _run_leased(job_id, client, data, store, send, worker, lease)
    except redis.RedisError as exc:  # nothing can be recorded now; the lease lapses and a worker resumes the job
        log.warning("job %s: lost Redis (%s); it will resume from its last checkpoint", job_id, exc)
        return "interrupted"
    except LeaseLost:
        log.warning("job %s: lease lost; another coordinator has taken over", job_id)
        return None
    finally:
        lease.release()


def _run_leased(job_id: str, client: redis.Redis, data: StepData, store: JobStore, send: StartLoops,
                worker: str, lease: Lease) -> str | None:
    settings = store.settings
    record = store.get(job_id)
    if record is None or record["status"] not in ("queued", "running"):
        log.info("job %s: %s; nothing to do", job_id, record and record["status"])
        return None
    spec = record["spec"]
    resuming = record["status"] == "running"
    if resuming:
        blocks = int(record.get("blocks", 0))
        store.client.hset(store.keys(job_id).record, "worker", worker)
    else:
        blocks = 0
        if spec["gradient"]["method"] != "backprop":
            live = len(alive_workers(client, settings, settings.blocks_queue))
            blocks = resolve_blocks(spec["gradient"]["blocks"], live)
        if not store.transition(job_id, "running", ["queued"], started_at=time.time(), worker=worker, blocks=blocks):
            return None  # cancelled meanwhile
    run = int(client.hincrby(store.keys(job_id).record, "runs", 1))
    fanout = None
    try:
        trainer, fanout = _build(job_id, spec, blocks, client, data, store, send)
        if resuming:
            _resume(job_id, trainer, fanout, client, store)
        if fanout is not None:
            fanout.run = run
        report = StepReporter(store, job_id, fanout, lease)
        while not trainer.done:
            if report(trainer.step(), trainer):
                raise JobCancelled(job_id)
    except JobCancelled:
        log.info("job %s: cancelled", job_id)
        store.finish(job_id, "cancelled")
        return "cancelled"
    except (DatasetError, DatasetNotFoundError, BlockFailed, ValueError) as exc:
        log.warning("job %s failed: %s", job_id, exc)
        store.fail(job_id, str(exc))
        return "failed"
    except (redis.RedisError, LeaseLost):
        raise
    except Exception as exc:
        log.exception("job %s: unexpected error", job_id)
        store.fail(job_id, f"internal error: {type(exc).__name__}: {exc}")
        return "failed"
    finally:
        if fanout is not None:
            try:
                fanout.close()
            except redis.RedisError:
                pass  # the step keys expire by themselves
    history = trainer.history.to_dict()
    history["config"] = {**history["config"], "dataset": spec["dataset"], "blocks": blocks, "job_id": job_id}
    store.finish(job_id, "succeeded", weights=weights_bytes(trainer.net.params), history=history)
    return "succeeded"


def _resume(job_id: str, trainer: Trainer, fanout: FanoutGradient | None, client: redis.Redis,
            store: JobStore) -> None:
    """Continue from the last checkpoint (or the start), forgetting what was recorded after it."""
    state = load_checkpoint(client, store.settings, job_id)
    step = 0 if state is None else state.step
    if state is not None:
        trainer.restore(state)
    if fanout is not None:
        fanout.step = step
    rewind_progress(client, store.settings, job_id, step)
    client.hset(store.keys(job_id).record, "resumed_from", step)
    log.warning("job %s: resuming from iteration %d", job_id, step)


def _build(job_id: str, spec: Mapping[str, Any], blocks: int, client: redis.Redis, data: StepData, store: JobStore,
           send: StartLoops) -> tuple[Trainer, FanoutGradient | None]:
    """The trainer for the job, with a fan-out gradient unless the method is backprop (computed here)."""
    config = train_config(spec)
    dataset = spec["dataset"]
    _, output_size = dataset_shape(dataset)
    trainer = Trainer(load_mnist(dataset=dataset), config, output_size=output_size)
    if config.gradient == "backprop":
        return trainer, None
    fanout = FanoutGradient(client, data, store.settings, job_id, param_shapes(trainer.net.params), config.gradient,
                            blocks, send, cancel_flag=(store.keys(job_id).record, "cancel_requested"))
    trainer.gradient_fn = fanout
    return trainer, fanout
