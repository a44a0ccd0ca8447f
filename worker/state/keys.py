"""Every Redis key and channel the service uses, in one place, so the layout can be read at a glance.

    <p>:job:<id>                 hash    the job record (status, spec JSON, progress, timings, error)
    <p>:job:<id>:loss            list    per-iteration loss, appended as the job trains
    <p>:job:<id>:epochs          list    per-epoch {"iteration", "train_acc", "test_acc"} JSON
    <p>:job:<id>:history         string  the final zdl History JSON
    <p>:job:<id>:weights         string  the final weights, .npz bytes
    <p>:job:<id>:events          channel pub/sub progress and status events (for SSE)
    <p>:job:<id>:checkpoint      hash    the trainer state (a frame: step, RNG, shapes, float64 params) and history
    <p>:job:<id>:log             list    the job's event log for its owner (JSON; worker/state/job_log.py)
    <p>:job:<id>:lease           string  the run token of the process coordinating the job (expiring)
    <p>:job:<id>:resume          string  set when a worker re-enqueues an orphaned job, until a coordinator takes it
    <p>:jobs / <p>:jobs:<status> zset    job ids by creation time, all and per status (metrics, recovery)
    <p>:owner:<h>:jobs[:<status>] zset   the same, per owner (h: HMAC of the API key with the server secret)
    <p>:owner:<h>:bytes          string  bytes reserved for the results of the owner's stored jobs (quota)
    <p>:owner:<h>:usage          hash    cpu_seconds measured for the owner's jobs (worker/state/usage.py)
    <p>:apikey:<h>, <p>:apikey-names, <p>:apikeys-revoked   the named keys (worker/state/apikeys.py)
    <p>:busy:<queue>             hash    "<worker>|<job id>" -> since when it works on it (worker/scheduling/busy.py)
    <p>:idem:<h>:<key>           string  an owner's Idempotency-Key -> job id (a sweep's: its first job's id)
    <p>:sweep:<id>               hash    a sweep: owner, its request, its jobs' ids and varied settings (JSON)
    <p>:owner:<h>:sweeps         zset    an owner's sweep ids by creation time
    <p>:pending:<h>              zset    an owner's queued jobs not yet sent to a coordinator, by creation time
    <p>:pending                  zset    owners with pending jobs -> when one of their jobs was last sent (round robin)
    <p>:dispatched[:<h>]         zset    jobs sent to a coordinator that have not started yet -> when sent
    <p>:expiring                 zset    "<h>:<job id>" of finished jobs -> when they are deleted
    <p>:scheduler                string  lock held while a process decides which jobs to send
    <p>:gang-start               string  lock held while a coordinator queues a gang's replicas
    <p>:gang:<job>:<r>.<turn>:*  a gang's turn (worker/gang/protocol.py: state, inboxes, progress, replicas, abort)
    <p>:workers:<queue>          zset    worker process <hostname>#<instance> -> last heartbeat (unix time)
    <p>:slots:<queue>            hash    worker hostname -> how many jobs it runs at once (its concurrency)
    <p>:run:<job>:<r>:requests   list    the run's block-group requests (BlockRequest JSON), popped by block loops
    <p>:run:<job>:<r>:loops      hash    block loop id -> "queued:<unix time sent>" or the worker process serving it
    <p>:step:<job>:<r>.<n>:<array> string one step's params W1 b1 W2 b2, batch x, t (raw bytes, expiring);
                                         r is the job's run (attempt), so a resumed run never reads old notices
    <p>:step:<job>:<r>.<n>:done  list    block completion notices (JSON line + raw float64 values) BLPOPed
                                         by the coordinator
    <p>:step:<job>:<r>.<n>:claims hash   block group -> worker process (<hostname>#<instance>) computing it
    <p>:stats:*                  metrics shared by all processes (counters, histograms)
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.settings import Settings

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class JobKeys:
    """Keys of one job."""

    record: str
    loss: str
    epochs: str
    history: str
    weights: str
    events: str
    checkpoint: str
    lease: str
    resume: str

    @classmethod
    def of(cls, settings: Settings, job_id: str) -> JobKeys:
        base = settings.key("job", job_id)
        return cls(base, f"{base}:loss", f"{base}:epochs", f"{base}:history", f"{base}:weights", f"{base}:events",
                   f"{base}:checkpoint", f"{base}:lease", f"{base}:resume")

    @property
    def log(self) -> str:
        """The job's event log for its owner (worker/state/job_log.py)."""
        return f"{self.record}:log"

    def data_keys(self) -> list[str]:
        """Everything stored for the job (the events channel is not a key)."""
        return [self.record, self.loss, self.epochs, self.history, self.weights, self.checkpoint, self.log]


@dataclass(frozen=True)
class StepKeys:
    """Keys of one training step of one job: arrays in, completion notices out, claims."""

    prefix: str

    @classmethod
    def of(cls, settings: Settings, job_id: str, step: int, run: int = 1) -> StepKeys:
        return cls(settings.key("step", job_id, f"{run}.{step}"))

    def array(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    @property
    def done(self) -> str:
        return f"{self.prefix}:done"

    @property
    def claims(self) -> str:
        return f"{self.prefix}:claims"


@dataclass(frozen=True)
class RunKeys:
    """Keys of one run (attempt) of one job: the requests its block loops serve, and the loops."""

    prefix: str

    @classmethod
    def of(cls, settings: Settings, job_id: str, run: int = 1) -> RunKeys:
        return cls(settings.key("run", job_id, run))

    @property
    def requests(self) -> str:
        return f"{self.prefix}:requests"

    @property
    def loops(self) -> str:
        return f"{self.prefix}:loops"


def jobs_index(settings: Settings, status: str | None = None) -> str:
    return settings.key("jobs") if status is None else settings.key("jobs", status)


def owner_index(settings: Settings, owner: str, status: str | None = None) -> str:
    """One owner's jobs (all, or of one status); `owner` is the hex SHA-256 of the owner's API key."""
    return settings.key("owner", owner, "jobs") if status is None else settings.key("owner", owner, "jobs", status)


def sweep(settings: Settings, sweep_id: str) -> str:
    return settings.key("sweep", sweep_id)


def owner_sweeps(settings: Settings, owner: str) -> str:
    return settings.key("owner", owner, "sweeps")


def owner_key(settings: Settings, owner: str, name: str) -> str:
    """One owner's key `name` (e.g. "usage", worker/state/usage.py)."""
    return settings.key("owner", owner, name)


def owner_bytes(settings: Settings, owner: str) -> str:
    return settings.key("owner", owner, "bytes")


def pending(settings: Settings, owner: str | None = None) -> str:
    return settings.key("pending") if owner is None else settings.key("pending", owner)


def dispatched(settings: Settings, owner: str | None = None) -> str:
    return settings.key("dispatched") if owner is None else settings.key("dispatched", owner)


def expiring(settings: Settings) -> str:
    return settings.key("expiring")


def scheduler_lock(settings: Settings) -> str:
    return settings.key("scheduler")


def gang_start_lock(settings: Settings) -> str:
    """Held while a coordinator puts a gang's replicas on the blocks queue (worker/celery_app/tasks.py)."""
    return settings.key("gang-start")


def slots(settings: Settings, queue: str) -> str:
    return settings.key("slots", queue)


def idempotency(settings: Settings, owner: str, key: str) -> str:
    return settings.key("idem", owner, key)


def workers(settings: Settings, queue: str) -> str:
    return settings.key("workers", queue)


def stat(settings: Settings, *name: str) -> str:
    return settings.key("stats", *name)
