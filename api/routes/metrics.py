"""/metrics in the Prometheus text format: a tenant sees its own jobs; admins and an open scrape see all."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api.auth import bearer, is_admin, require_owner
from api.collector import ServiceCollector
from api.deps import RedisDep, SettingsDep
from api.key_metrics import KeyCollector


async def metrics_scope(request: Request,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str | None:
    """Whose jobs to count: None (all) when ZDL_PUBLIC_METRICS is true or the key is an admin key, else
    the caller's owner id (the same API key check as /v1)."""
    if request.app.state.settings.public_metrics:
        return None
    owner = await require_owner(request, credentials)
    return None if is_admin(request, owner) else owner


router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
def metrics(client: RedisDep, settings: SettingsDep, owner: Annotated[str | None, Depends(metrics_scope)],
            request: Request) -> Response:
    """Jobs by status and iterations done (the caller's, or all for an admin key), live workers, gradient
    block latency, fan-out overhead; for an admin key also per key, labelled by the key's name."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(client, settings, owner))
    caller = getattr(request.state, "caller", None)
    if caller is not None and caller.admin:
        registry.register(KeyCollector(client, settings))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
