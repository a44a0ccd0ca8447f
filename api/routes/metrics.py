"""/metrics in the Prometheus text format."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.auth import bearer, require_owner
from api.collector import ServiceCollector
from api.deps import RedisDep, SettingsDep


async def metrics_access(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """Open when ZDL_PUBLIC_METRICS is true; otherwise the same API key check as /v1."""
    if not request.app.state.settings.public_metrics:
        await require_owner(request, credentials)


router = APIRouter(tags=["metrics"], dependencies=[Depends(metrics_access)])


@router.get("/metrics", response_class=Response)
def metrics(client: RedisDep, settings: SettingsDep) -> Response:
    """Jobs by status, live workers, iterations done, gradient block latency, fan-out overhead."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(client, settings))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
