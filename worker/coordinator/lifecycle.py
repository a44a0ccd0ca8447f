"""One job's life on a coordinator: take its lease, start a run, run it (a gang or the fan-out:
`worker.coordinator.runs`), report its progress, finish it (succeeded, failed, cancelled, or interrupted to
resume elsewhere). A job found `running` without a live coordinator resumes from its last checkpoint
(`worker.scheduling.recovery`, `worker.state.checkpoints`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from worker.coordinator.job_events import log_start
from worker.coordinator.reporter import StepReporter, StepTimings
from worker.coordinator.runs import JobRun, Senders, run_fanout, run_gang
from worker.scheduling.heartbeat import alive_workers
from worker.scheduling.plan import plan
from worker.scheduling.recovery import Lease, LeaseLost
from worker.state.errors import BlockFailed, CoordinatorStopping, JobCancelled, JobStopped, node_label, public_reason
from worker.state.job_store import JobStore
from worker.state.transfer import StepData
from worker.state.usage import CpuMeter
from zdl.datasets import DatasetError, DatasetNotFoundError, dataset_shape
from zdl.io import weights_bytes
from zdl.spec import JobSpec

log = logging.getLogger(__name__)


def run_job(job_id: str, *, client: redis.Redis, data: StepData, store: JobStore, send: Senders,
            worker: str, stopping: Callable[[], bool] = lambda: False, after: Callable[[], object] = lambda: None,
            ) -> str | None:
    """Run (or resume) the job to its end; returns the final status, None if the job was not this worker's
    to run, or "interrupted" if Redis (either one) went away or this process was asked to stop (the job
    resumes from its checkpoint). client: the main Redis; data: where step data goes; after: called at the
    end whatever happened (the scheduler fills the slot this run frees)."""
    lease = Lease(client, store.settings, job_id)
    meter = CpuMeter(client, store.settings, job_id, "", time.process_time)  # one job per pool process
    try:
        if not lease.acquire():
            log.info("job %s: another process coordinates it; nothing to do", job_id)
            return None
        return _run_leased(job_id, client, data, store, send, node_label(worker), lease, stopping, meter)
    except redis.exceptions.OutOfMemoryError as exc:  # a full store: end the job (its slots free) with the reason
        log.error("job %s: Redis refused a write for want of memory (%s); failing it", job_id, exc)
        store.fail(job_id, "the job store ran out of memory while this job was running (Redis at maxmemory); "
                           "delete finished jobs to make room, then submit it again")
        return "failed"
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
                worker: str, lease: Lease, stopping: Callable[[], bool], meter: CpuMeter) -> str | None:
    opened = _open_run(job_id, client, data, store, worker)
    if not isinstance(opened, JobRun):
        return opened
    job = opened
    meter.owner = job.owner

    def reporter(timings: StepTimings | None) -> StepReporter:
        return StepReporter(store, job_id, job.owner, timings, lease, job.started_at, stopping, meter.tick)

    try:
        params, history = (run_gang if job.gang else run_fanout)(job, send, reporter)
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
        store.fail(job_id, public_reason(exc, job.spec.dataset), **getattr(exc, "fields", {}))
        return "failed"
    finally:
        meter.flush()  # (before the job is seen to end, when it succeeds)
    history["config"] = {**history["config"], "dataset": job.spec.dataset, "blocks": job.blocks, "job_id": job_id}
    store.finish(job_id, "succeeded", weights=weights_bytes(params), history=history)
    return "succeeded"


def _open_run(job_id: str, client: redis.Redis, data: StepData, store: JobStore, worker: str) -> JobRun | str | None:
    """Start (or resume) a run of the job: the run, or the status to return at once (None: not ours to run,
    "failed": its record cannot be read, or its coordinators died too often)."""
    try:
        record = store.get(job_id)
        if record is None or record["status"] not in ("queued", "running"):
            log.info("job %s: %s; nothing to do", job_id, record and record["status"])
            return None
        spec = JobSpec.model_validate(record["spec"])
        dataset_shape(spec.dataset)  # a name the API would have refused
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
              hidden_size=spec.model.hidden_size, gradient=spec.gradient.method,
              redis_epochs=_redis_epochs(client, data))
    run = _start_run(client, data, store, job_id)
    return JobRun(job_id, record["owner"], spec, blocks, run, resuming, live, record.get("started_at"), client, data,
                  store)



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
