"""Running one job: take its lease, load its data, run zdl's training loop with the fan-out gradient, store results.

The loop is `zdl.train.Trainer`, the very loop `zdl train` runs; only its gradient function differs
(block loops on Celery workers instead of local processes), which is what makes the weights bit-identical. A job found
`running` without a live coordinator resumes from its last checkpoint (see worker/scheduling/recovery.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import redis

from worker.coordinator.job_events import log_start
from worker.coordinator.reporter import StepReporter, StepTimings
from worker.fanout.gradient import FanoutGradient, StartLoops
from worker.gang.run import GangRun, StartReplicas
from worker.scheduling.heartbeat import alive_workers
from worker.scheduling.plan import plan
from worker.scheduling.recovery import Lease, LeaseLost, load_checkpoint, rewind_progress
from worker.state.errors import BlockFailed, CoordinatorStopping, JobCancelled, JobStopped, node_label, public_reason
from worker.state.job_store import JobStore
from worker.state.specs import train_config
from worker.state.transfer import StepData
from zdl.datasets import DatasetError, DatasetNotFoundError, dataset_shape, load_mnist
from zdl.engine import param_shapes
from zdl.io import weights_bytes
from zdl.train import TrainConfig, Trainer, TrainerState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Senders:
    """How a coordinator starts work on the block workers: block loops (fan-out) or a gang's replicas."""

    loops: StartLoops
    replicas: StartReplicas


def run_job(job_id: str, *, client: redis.Redis, data: StepData, store: JobStore, send: Senders,
            worker: str, stopping: Callable[[], bool] = lambda: False, after: Callable[[], object] = lambda: None,
            ) -> str | None:
    """Run (or resume) the job to its end; returns the final status, None if the job was not this worker's
    to run, or "interrupted" if Redis (either one) went away or this process was asked to stop (the job
    resumes from its checkpoint). client: the main Redis; data: where step data goes; after: called at the
    end whatever happened (the scheduler fills the slot this run frees)."""
    lease = Lease(client, store.settings, job_id)
    try:
        if not lease.acquire():
            log.info("job %s: another process coordinates it; nothing to do", job_id)
            return None
        return _run_leased(job_id, client, data, store, send, node_label(worker), lease, stopping)
    except redis.RedisError as exc:  # nothing can be recorded now; the lease lapses and a worker resumes the job
        log.warning("job %s: lost Redis (%s); it will resume from its last checkpoint", job_id, exc)
        return "interrupted"
    except LeaseLost:
        log.warning("job %s: lease lost; another coordinator has taken over", job_id)
        return None
    finally:
        lease.release()
        try:
            after()
        except Exception as exc:  # e.g. Redis away: the coordinators' heartbeats dispatch later
            log.warning("after job %s: %s", job_id, exc)


def _run_leased(job_id: str, client: redis.Redis, data: StepData, store: JobStore, send: Senders,
                worker: str, lease: Lease, stopping: Callable[[], bool]) -> str | None:
    try:
        record = store.get(job_id)
        if record is None or record["status"] not in ("queued", "running"):
            log.info("job %s: %s; nothing to do", job_id, record and record["status"])
            return None
        spec = record["spec"]
        config, dataset = train_config(spec), str(spec["dataset"])
        dataset_shape(dataset)  # a name the API would have refused
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:  # a record no run could ever read
        log.error("job %s: malformed record or spec (%r); failing it", job_id, exc)
        store.fail(job_id, f"the job's stored spec is malformed ({type(exc).__name__}) and cannot run")
        return "failed"
    resuming = record["status"] == "running"
    live = len(alive_workers(client, store.settings, store.settings.blocks_queue))
    if resuming:
        crashes = _count_crash(client, data, store, job_id, record)
        if crashes >= store.settings.max_coordinator_crashes:
            log.error("job %s: its coordinator died %d times; failing it", job_id, crashes)
            store.fail(job_id, f"the process coordinating this job died {crashes} times (killed, or out of memory: "
                               "try a smaller hidden size or batch size); it is not retried again")
            return "failed"
        blocks = int(record.get("blocks", 0))
        store.client.hset(store.keys(job_id).record, "worker", worker)
    else:
        blocks = plan(spec, store.settings, live).groups
        if not store.transition(job_id, "running", ["queued"], started_at=time.time(), worker=worker, blocks=blocks):
            return None  # cancelled meanwhile
    log_start(client, store.settings, job_id, record=record, worker=worker, blocks=blocks,
              hidden_size=config.hidden_size, gradient=config.gradient, redis_epochs=_redis_epochs(client, data))
    run = _start_run(client, data, store, job_id)
    owner = record["owner"]

    def reporter(timings: StepTimings | None) -> StepReporter:
        return StepReporter(store, job_id, owner, timings, lease, record.get("started_at"), stopping)

    fanout = None
    try:
        if 0 < blocks <= min(live, config.hidden_size):  # one replica per group, every group on a worker of its own
            state = _resume_state(job_id, client, store) if resuming else None
            gang = GangRun(client, data, store.settings, job_id, owner, run, spec, blocks, send.replicas, reporter)
            final = gang.run(state)
            params, history = final.params, final.history.to_dict()
            history["config"] = asdict(config)
        else:
            trainer, fanout = _build(job_id, owner, config, dataset, blocks, client, data, store, send.loops)
            if resuming:
                state = _resume_state(job_id, client, store)
                if state is not None:
                    trainer.restore(state)
                if fanout is not None:
                    fanout.step = 0 if state is None else state.step
            if fanout is not None:
                fanout.run = run
            report = reporter(fanout)
            while not trainer.done:
                report(trainer.step(), trainer)
            params, history = trainer.net.params, trainer.history.to_dict()
    except JobCancelled:
        log.info("job %s: cancelled", job_id)
        store.finish(job_id, "cancelled")
        return "cancelled"
    except CoordinatorStopping:
        log.warning("job %s: this coordinator is stopping; the job resumes from its checkpoint", job_id)
        client.hset(store.keys(job_id).record, "run_state", "interrupted")
        return "interrupted"
    except (redis.RedisError, LeaseLost):
        raise
    except Exception as exc:
        expected = isinstance(exc, (JobStopped, DatasetError, DatasetNotFoundError, BlockFailed, ValueError))
        (log.warning if expected else log.exception)("job %s failed: %s", job_id, exc)
        store.fail(job_id, public_reason(exc, dataset), **getattr(exc, "fields", {}))
        return "failed"
    finally:
        if fanout is not None:
            try:
                fanout.close()
            except redis.RedisError:
                pass  # the step keys expire by themselves
    history["config"] = {**history["config"], "dataset": dataset, "blocks": blocks, "job_id": job_id}
    store.finish(job_id, "succeeded", weights=weights_bytes(params), history=history)
    return "succeeded"


def _redis_epochs(client: redis.Redis, data: StepData) -> str:
    """The run ids of both Redis servers: they change whenever a server restarts."""
    return f"{client.info('server')['run_id']}/{data.client.info('server')['run_id']}"


def _start_run(client: redis.Redis, data: StepData, store: JobStore, job_id: str) -> int:
    """Record that a run starts now, under which Redis servers; returns the run's number."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hset(store.keys(job_id).record, mapping={"run_state": "running",
                                                       "redis_epochs": _redis_epochs(client, data)})
        pipe.hincrby(store.keys(job_id).record, "runs", 1)
        return int(pipe.execute()[-1])


def _count_crash(client: redis.Redis, data: StepData, store: JobStore, job_id: str, record: Mapping[str, Any]) -> int:
    """The job's coordinator crashes so far, counting its last run if that one died: it neither ended the job
    nor said it stopped, while both Redis servers stayed up (a restarted Redis interrupts every run)."""
    crashes = int(record.get("crashes", 0))
    if record.get("run_state") == "running" and record.get("redis_epochs") == _redis_epochs(client, data):
        crashes = int(client.hincrby(store.keys(job_id).record, "crashes", 1))
    return crashes


def _resume_state(job_id: str, client: redis.Redis, store: JobStore) -> TrainerState | None:
    """The last checkpoint (None: start again), with what was recorded after it forgotten."""
    state = load_checkpoint(client, store.settings, job_id)
    step = 0 if state is None else state.step
    rewind_progress(client, store.settings, job_id, step)
    client.hset(store.keys(job_id).record, "resumed_from", step)
    log.warning("job %s: resuming from iteration %d", job_id, step)
    return state


def _build(job_id: str, owner: str, config: TrainConfig, dataset: str, blocks: int, client: redis.Redis,
           data: StepData, store: JobStore, send: StartLoops) -> tuple[Trainer, FanoutGradient | None]:
    """The trainer for the job, with a fan-out gradient unless the method is backprop (computed here)."""
    _, output_size = dataset_shape(dataset)
    trainer = Trainer(load_mnist(dataset=dataset), config, output_size=output_size)
    if config.gradient == "backprop":
        return trainer, None
    fanout = FanoutGradient(client, data, store.settings, job_id, param_shapes(trainer.net.params), config.gradient,
                            blocks, send, cancel_flag=(store.keys(job_id).record, "cancel_requested"), owner=owner)
    trainer.gradient_fn = fanout
    return trainer, fanout
