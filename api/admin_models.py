"""Request and response bodies of the admin routes (/v1/admin/...) and of /v1/usage."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.models import JobOut

#: worker/state/apikeys.py's NAME_PATTERN, written for the OpenAPI schema.
KEY_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class KeyLimits(BaseModel):
    """A key's own limits; a limit left out is the setting's (ZDL_MAX_..._PER_KEY)."""

    model_config = ConfigDict(extra="forbid")
    running_jobs: int | None = Field(default=None, ge=1, description="jobs running at once")
    active_jobs: int | None = Field(default=None, ge=1, description="jobs queued or running")
    stored_jobs: int | None = Field(default=None, ge=1, description="jobs stored, of any status")
    stored_mb: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="MiB of stored results")
    core_hours: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                     description="measured CPU core-hours in all (0: no limit)")


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=KEY_NAME, description="a student id or a label: a-z 0-9 . _ -, at most 64")
    admin: bool = Field(default=False, description="may manage keys and read and cancel every key's jobs")
    limits: KeyLimits = Field(default_factory=KeyLimits)


class Usage(BaseModel):
    cpu_seconds: float = Field(description="CPU time measured for the key's jobs (deleted ones included)")
    jobs: dict[str, int] = Field(description="the key's stored jobs by status")
    stored_jobs: int
    stored_bytes: int = Field(description="bytes reserved for the stored jobs' results (what the quota counts)")


class Limits(BaseModel):
    running_jobs: int
    active_jobs: int
    stored_jobs: int
    stored_mb: float
    core_hours: float = Field(description="0: no limit")


class KeyOut(BaseModel):
    name: str
    admin: bool
    created_at: float
    last_used_at: float | None = None
    origin: str = Field(description="live (POST /v1/admin/keys) or env (ZDL_API_KEYS / ZDL_ADMIN_KEYS)")
    limits: Limits
    usage: Usage


class KeyCreated(KeyOut):
    key: str = Field(description="the API key: shown this once, never stored")


class KeyPage(BaseModel):
    items: list[KeyOut]


class Revoked(BaseModel):
    name: str
    cancelled: int = Field(description="queued and running jobs of the key that were cancelled")


class UsageOut(BaseModel):
    name: str
    admin: bool
    limits: Limits
    usage: Usage
    keys: list[KeyOut] | None = Field(default=None, description="every key's, for an admin key")


class AdminJobOut(JobOut):
    key: str | None = Field(description="the name of the key that owns the job (none once the key is revoked)")


class AdminJobPage(BaseModel):
    items: list[AdminJobOut]
    total: int
    offset: int
    limit: int


class WorkerOut(BaseModel):
    name: str
    queue: str
    role: str = Field(description="coordinator (runs jobs) or blocks (computes their gradient blocks)")
    slots: int
    jobs: list[str] = Field(description="the jobs it works on now")


class WorkerPage(BaseModel):
    items: list[WorkerOut]
