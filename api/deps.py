"""Dependencies of the routes, as `Annotated` aliases: settings, Redis clients, the job store, the caller's job."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

import redis
import redis.asyncio
from fastapi import Depends, HTTPException, Path, Request

from api.auth import OwnerDep
from worker.settings import Settings
from worker.state.job_store import JobStore, decode_record
from worker.state.keys import JobKeys
from worker.state.keys import workers as workers_key
from worker.state.replies import hash_reply

JOB_ID = Path(description="the id POST /v1/jobs returned (32 hex digits)")

#: What `JobStore.create` makes (uuid4 hex). Anything else is a 404 before it can reach a Redis key name.
JOB_ID_PATTERN = re.compile(r"[0-9a-f]{32}")


def valid_job_id(job_id: str) -> str:
    """The id, if it is one the store could have made; 404 (as for a missing job) otherwise."""
    if not JOB_ID_PATTERN.fullmatch(job_id):
        raise HTTPException(404, "Job not found")
    return job_id


JobId = Annotated[str, JOB_ID]

# The dependencies that do no I/O are `async def`: FastAPI runs them inline instead of handing each to
# the thread pool (five thread hops per request made a status poll several times slower under load).


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings  # app.state is untyped: the lifespan sets these three
    return settings


async def get_redis(request: Request) -> redis.Redis:
    client: redis.Redis = request.app.state.redis
    return client


async def get_async_redis(request: Request) -> redis.asyncio.Redis:
    client: redis.asyncio.Redis = request.app.state.async_redis
    return client


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
AsyncRedisDep = Annotated[redis.asyncio.Redis, Depends(get_async_redis)]


async def get_block_workers(client: AsyncRedisDep, settings: SettingsDep) -> int:
    """How many block workers heartbeat now (for the jobs' wall-time estimates)."""
    return int(await client.zcount(workers_key(settings, settings.blocks_queue),
                                   time.time() - settings.heartbeat_ttl_s, "+inf"))


BlockWorkersDep = Annotated[int, Depends(get_block_workers)]


async def get_store(client: RedisDep, settings: SettingsDep) -> JobStore:
    return JobStore(client, settings)


StoreDep = Annotated[JobStore, Depends(get_store)]


async def get_job(job_id: JobId, client: AsyncRedisDep, settings: SettingsDep, owner: OwnerDep) -> dict[str, Any]:
    """The caller's job record, or 404 (also for another key's job: its existence is not revealed)."""
    raw = await client.hgetall(JobKeys.of(settings, valid_job_id(job_id)).record)
    record = decode_record(hash_reply(raw)) if raw else None
    if record is None or record.get("owner") != owner:
        raise HTTPException(404, "Job not found")
    return record


JobDep = Annotated[dict[str, Any], Depends(get_job)]
