"""Liveness and readiness probes (open to all, for load balancers and orchestrators)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import RedisDep, SettingsDep
from api.readiness import readiness

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
    return JSONResponse(report, status_code=200 if ready else 503)
