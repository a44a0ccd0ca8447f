"""One settings object for the API and the workers, read from `ZDL_*` environment variables.

Both sides must agree on the Redis URL, queue names and key expiry, so they read them from the same
place. Limits are here so the follow-up security issue can tighten them without touching the routes.
"""

from __future__ import annotations

import hashlib
import ipaddress
from functools import lru_cache

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service configuration; every field can be set as `ZDL_<FIELD>` (e.g. `ZDL_REDIS_URL`)."""

    model_config = SettingsConfigDict(env_prefix="ZDL_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    #: The Redis that carries each step's data (arrays, block requests, completion notices): transient,
    #: ~1 MB per step through it, so best a server of its own without persistence (`zdl cluster up` and
    #: docker-compose.yml run one). Empty: `redis_url`, where step data is then written by scripts that
    #: keep it out of the append-only file (at about twice the cost per write).
    step_redis_url: str = ""
    key_prefix: str = "zdl"

    #: Comma-separated API keys; each key owns the jobs it creates. Empty: no keys, and then the API may
    #: only listen on a loopback address (see `api_host` and the validator below).
    api_keys: SecretStr = SecretStr("")
    #: The address `python -m api` (and `zdl cluster up`) binds the API to.
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    #: /metrics without a key (for a Prometheus scraper on a private network); off by default.
    public_metrics: bool = False
    #: /docs, /redoc and /openapi.json are served (they show the API's shape, no data); off: not served at all.
    public_docs: bool = True

    coordinator_queue: str = "zdl.coordinator"
    blocks_queue: str = "zdl.blocks"

    #: Per-step arrays (parameters, batch, block results) expire after this, so a crash leaves nothing behind.
    step_key_ttl_s: int = Field(default=600, ge=10)
    #: Job records, history and weights; 0 keeps them until DELETE.
    job_ttl_s: int = Field(default=0, ge=0)
    idempotency_ttl_s: int = Field(default=86400, ge=60)

    #: Workers refresh a heartbeat this often; one missing for `heartbeat_ttl_s` counts as gone.
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    heartbeat_ttl_s: float = Field(default=6.0, gt=0)
    #: A block nobody has started after this long is sent again; a started block is re-sent as soon as
    #: the worker computing it stops heartbeating.
    block_timeout_s: float = Field(default=120.0, gt=0)
    #: How long the coordinator blocks on the completion list before it looks for lost blocks; also how
    #: long an idle block loop waits for a request before it checks whether it should end.
    block_poll_s: float = Field(default=1.0, gt=0)
    #: A block loop (one Celery task serving one job's requests step after step) ends after this long
    #: without a request, and after `block_loop_slice_s` of work when other block tasks are queued, so
    #: that concurrent jobs take turns on the block workers.
    block_loop_idle_s: float = Field(default=5.0, gt=0)
    block_loop_slice_s: float = Field(default=2.0, gt=0)
    #: Progress events are published at most this often (every epoch and the end are always published).
    progress_interval_s: float = Field(default=0.25, ge=0)
    #: Broker redelivery of unacknowledged messages; longer than any job, see worker/celery_app.py.
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
    #: Request bodies larger than this are refused with 413 (a job body is a few hundred bytes).
    max_body_bytes: int = Field(default=65536, ge=1024)

    @field_validator("redis_url", "step_redis_url")
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
        """Without API keys anyone who can reach the port could run jobs: allow that only on loopback."""
        if not self.api_key_hashes and not is_loopback(self.api_host):
            raise ValueError(f"ZDL_API_KEYS is empty, so the API may only listen on 127.0.0.1 (or ::1), not "
                             f"ZDL_API_HOST={self.api_host!r}: set ZDL_API_KEYS=<key>[,<key>...] first")
        return self

    @property
    def step_url(self) -> str:
        """Where step data goes: the step Redis, or the main one when none is set."""
        return self.step_redis_url or self.redis_url

    @property
    def api_key_hashes(self) -> tuple[bytes, ...]:
        """SHA-256 digests of the configured keys; the keys themselves are not kept anywhere else."""
        keys = [k.strip() for k in self.api_keys.get_secret_value().split(",")]
        return tuple(hashlib.sha256(k.encode()).digest() for k in keys if k)

    def to_env(self) -> dict[str, str]:
        """These settings as `ZDL_*` variables, so child processes run with exactly the same ones."""
        values = self.model_dump()
        values["api_keys"] = self.api_keys.get_secret_value()
        return {f"ZDL_{name.upper()}": str(value) for name, value in values.items()}

    def key(self, *parts: object) -> str:
        """A Redis key under this deployment's prefix: key("job", id) -> "zdl:job:<id>"."""
        return ":".join([self.key_prefix, *map(str, parts)])


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
