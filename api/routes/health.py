"""Liveness and readiness probes (open to all, for load balancers and orchestrators)."""

from __future__ import annotations

import hmac

import redis
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security.utils import get_authorization_scheme_param
from starlette.concurrency import run_in_threadpool

from api.auth import identify
from api.deps import RedisDep, SettingsDep
from api.readiness import for_caller, readiness
from worker.settings import Settings, is_loopback
from worker.state.apikeys import owner_id

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The API process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready: the report says what is missing"}})
async def readyz(request: Request, client: RedisDep, settings: SettingsDep) -> JSONResponse:
    """Ready when Redis (and the step Redis, if set) answers and at least one worker listens on each queue;
    503 says what is missing."""
    ready, report = await run_in_threadpool(readiness, client, settings, request.app.state.step_redis)
    admin = await _admin_caller(request, settings)
    body = await run_in_threadpool(for_caller, report, admin, client, settings)
    return JSONResponse(body, status_code=200 if ready else 503)


async def _admin_caller(request: Request, settings: Settings) -> bool:
    """Whether the request carries an admin key (or, on a keyless service, comes from this machine)."""
    if not settings.api_key_list:
        return is_loopback(request.client.host if request.client else "")
    scheme, key = get_authorization_scheme_param(request.headers.get("Authorization"))
    if scheme.lower() != "bearer" or not key:
        return False
    candidate = owner_id(key, settings).encode()  # a configured admin key is known without Redis
    if any([hmac.compare_digest(candidate, owner_id(k, settings).encode()) for k in settings.admin_key_list]):
        return True
    try:  # a key made live (worker/state/apikeys.py)
        caller = await identify(request, HTTPAuthorizationCredentials(scheme=scheme, credentials=key))
    except (HTTPException, redis.RedisError):  # unknown, revoked, or Redis away: the probe answers without details
        return False
    return caller.admin
