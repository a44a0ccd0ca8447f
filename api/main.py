"""The FastAPI application: settings, Redis clients, error handlers and routers; nothing else."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
import redis.asyncio
import redis.asyncio.retry
from fastapi import FastAPI
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from api import errors
from api.access_log import AccessLog
from api.limits import BodySizeLimit
from api.routes import admin, docs, health, job_log, jobs, metrics, pages, plots, sweeps
from api.stream_hub import EventHub
from worker.celery_app.app import job_queue
from worker.scheduling.admission import machine_speed_of
from worker.settings import Settings, get_settings
from worker.state.apikeys import KeyRegistry
from worker.state.headroom import quota_warning
from worker.telemetry import structured_log

log = logging.getLogger(__name__)

#: A command that fails on a broken connection (e.g. pooled before Redis restarted) is sent again on a new one
#: up to 3 times, 50, 100, 200 ms apart: clients made by `from_url` would otherwise not retry at all, and the
#: first request after a Redis restart would answer 503 although Redis is back.
RETRIES = 3
BACKOFF = ExponentialBackoff(cap=0.5, base=0.025)


def _warn_about_quotas(client: redis.Redis, settings: Settings) -> None:
    """Log, at start, when the keys' stored-bytes quotas together exceed what the job store takes (also in
    /readyz for admins)."""
    try:
        warning = quota_warning(client, settings, len(settings.api_key_list))
    except redis.RedisError:
        return  # Redis not up yet: /readyz reports it
    if warning:
        log.warning("storage: %s", warning)


async def _register_keys(client: redis.Redis, settings: Settings) -> None:
    """Name and store the keys of ZDL_API_KEYS / ZDL_ADMIN_KEYS (worker/state/apikeys.py), at start; while
    Redis cannot be reached, again every 2 s (the API starts anyway and answers 503 meanwhile)."""
    while True:
        try:
            await asyncio.to_thread(KeyRegistry(client, settings).bootstrap)
            return
        except redis.RedisError as exc:
            log.warning("could not register the configured API keys yet (%s); retrying", type(exc).__name__)
            await asyncio.sleep(2.0)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        structured_log.configure("api", settings)
        retry = Retry(BACKOFF, RETRIES)
        app.state.redis = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10,
                                               health_check_interval=30, retry=retry)
        app.state.async_redis = redis.asyncio.Redis.from_url(
            settings.redis_url, socket_connect_timeout=5, retry=redis.asyncio.retry.Retry(BACKOFF, RETRIES))
        app.state.step_redis = redis.Redis.from_url(settings.step_redis_url, socket_connect_timeout=2,
                                                    socket_timeout=5, retry=retry) if settings.step_redis_url else None
        await asyncio.to_thread(_warn_about_quotas, app.state.redis, settings)
        app.state.event_hub = EventHub(app.state.async_redis, settings)
        await app.state.event_hub.start()
        await asyncio.to_thread(machine_speed_of, settings)  # measured now, not in the first job's request
        keys_registered = asyncio.create_task(_register_keys(app.state.redis, settings), name="zdl-key-bootstrap")
        await asyncio.wait([keys_registered], timeout=10)  # served once the keys are known, unless Redis is away
        gc.freeze()  # start-up objects (FastAPI, pydantic, numpy, matplotlib) are never scanned by the collector
        yield
        keys_registered.cancel()
        await app.state.event_hub.close()
        app.state.redis.close()
        if app.state.step_redis is not None:
            app.state.step_redis.close()
        await app.state.async_redis.aclose()

    openapi_url = "/openapi.json" if settings.public_docs else None
    app = FastAPI(title="zdl training service", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=openapi_url,
                  description="Train the book's two-layer net (Deep Learning from Scratch, ch. 4) on Celery workers; "
                              "each iteration's numerical gradient is split into parameter blocks. Every /v1 "
                              "route needs `Authorization: Bearer <API key>`.")
    app.state.settings = settings
    app.state.job_queue = job_queue(settings)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog)  # added last: outermost, so it sees every response, 413s included
    errors.install(app)
    app.include_router(jobs.router)
    app.include_router(job_log.router)
    app.include_router(sweeps.router)
    app.include_router(admin.router)
    app.include_router(admin.usage_router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(plots.router)
    app.include_router(pages.router)
    if openapi_url is not None:
        docs.install(app, openapi_url)
    app.mount("/static", pages.static_files(), name="static")
    return app


app = create_app()
