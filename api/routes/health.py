"""Liveness and readiness probes (open to all, for load balancers and orchestrators)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.security.utils import get_authorization_scheme_param

from api.auth import LOCAL_OWNER, is_admin, keyring
from api.deps import RedisDep, SettingsDep
from api.readiness import for_caller, readiness
from worker.settings import Settings, is_loopback

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The API process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready: the report says what is missing"}})
def readyz(request: Request, client: RedisDep, settings: SettingsDep) -> JSONResponse:
    """Ready when Redis (and the step Redis, if set) answers and at least one worker listens on each queue;
    503 says what is missing."""
    ready, report = readiness(client, settings, request.app.state.step_redis)
    return JSONResponse(for_caller(report, _admin_caller(request, settings), client, settings),
                        status_code=200 if ready else 503)


def _admin_caller(request: Request, settings: Settings) -> bool:
    """Whether the request carries an admin key (or, on a keyless service, comes from this machine)."""
    if not settings.api_key_list:
        return is_loopback(request.client.host if request.client else "")
    scheme, key = get_authorization_scheme_param(request.headers.get("Authorization"))
    owner = keyring(request).owner_of(key, settings) if scheme.lower() == "bearer" and key else None
    return owner is not None and owner != LOCAL_OWNER and is_admin(request, owner)
