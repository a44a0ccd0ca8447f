"""The Redis clients of this process, shared by everything in it (redis-py pools are fork-aware)."""

from __future__ import annotations

from functools import lru_cache

import redis

from worker.settings import Settings, get_settings
from worker.state.transfer import StepData


@lru_cache(maxsize=4)
def redis_client(url: str | None = None) -> redis.Redis:
    """A client for `url` (default: the settings' URL) returning bytes; callers decode text themselves.

    Bytes, not str, because the same connections carry raw array data. A read that hangs (Redis stopped
    without closing the socket) fails after 30 s instead of blocking the worker for ever.
    """
    return redis.Redis.from_url(
        url or get_settings().redis_url, socket_connect_timeout=5, socket_timeout=30, socket_keepalive=True,
        health_check_interval=30,
    )


def step_data(settings: Settings | None = None) -> StepData:
    """Where this process reads and writes step data: the step Redis, or the main one if none is set."""
    settings = settings or get_settings()
    return StepData(redis_client(settings.step_url), unlogged=not settings.step_redis_url)
