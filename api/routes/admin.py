"""/v1/admin: keys managed live, every key's jobs and the workers (admin keys only: 403 for others), and
/v1/usage: a key's measured usage against its limits (every key's for an admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from api import admin
from api.admin_models import AdminJobPage, KeyCreate, KeyCreated, KeyPage, Revoked, UsageOut, WorkerPage
from api.auth import Caller, key_cache, require_admin, require_owner
from api.deps import BlockWorkersDep, RedisDep, SettingsDep, StoreDep
from api.models import ErrorOut, JobStatus
from worker.state.apikeys import KeyNameTaken, KeyRegistry

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
usage_router = APIRouter(prefix="/v1/usage", tags=["usage"], dependencies=[Depends(require_owner)],
                         responses={401: {"model": ErrorOut}})


@router.post("/keys", status_code=201, response_model=KeyCreated, responses={409: {"model": ErrorOut},
                                                                             422: {"model": ErrorOut}})
def create_key(body: KeyCreate, client: RedisDep, settings: SettingsDep) -> KeyCreated:
    """Make a key named `name`; the answer holds the key itself, shown this once. 409 if the name is in use."""
    if len(settings.secret_key.get_secret_value()) < 16:
        raise HTTPException(409, "keys can be made only with ZDL_SECRET_KEY set (16 characters or more)")
    own = body.limits.model_dump(exclude_none=True)
    try:
        secret, entry = KeyRegistry(client, settings).create(body.name, body.admin, own)
    except KeyNameTaken as exc:
        raise HTTPException(409, str(exc)) from exc
    view = admin.key_views(client, settings, [entry])[0]
    return KeyCreated(**view.model_dump(), key=secret)


@router.get("/keys", response_model=KeyPage)
def list_keys(client: RedisDep, settings: SettingsDep) -> KeyPage:
    """Every key by name: admin flag, when it was made and last used, its limits and its usage."""
    return KeyPage(items=admin.key_views(client, settings, KeyRegistry(client, settings).all()))


@router.delete("/keys/{name}", response_model=Revoked, responses={404: {"model": ErrorOut}})
def revoke_key(name: str, store: StoreDep, request: Request) -> Revoked:
    """Revoke a key: refused by every API process within a second; its queued and running jobs are cancelled,
    its stored jobs stay (admins can read them) until they expire."""
    entry, cancelled = admin.revoke(store, name)
    key_cache(request).forget(entry.owner)
    return Revoked(name=entry.name, cancelled=cancelled)


@router.get("/jobs", response_model=AdminJobPage, responses={404: {"model": ErrorOut}})
def list_jobs(
    store: StoreDep,
    settings: SettingsDep,
    live: BlockWorkersDep,
    key: Annotated[str | None, Query(max_length=64, description="only this key's jobs (its name)")] = None,
    status: JobStatus | None = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=10**9)] = 20,
) -> AdminJobPage:
    """Every key's jobs, newest first, with the key's name and a queued job's place in the queue."""
    limit = min(limit, settings.max_page_size)
    total, items = admin.list_jobs(store, key, status, offset, limit, live)
    return AdminJobPage(items=items, total=total, offset=offset, limit=limit)


@router.get("/workers", response_model=WorkerPage)
def list_workers(client: RedisDep, settings: SettingsDep) -> WorkerPage:
    """The workers alive now, their slots and the jobs each works on."""
    return WorkerPage(items=admin.workers(client, settings))


@usage_router.get("", response_model=UsageOut)
def get_usage(client: RedisDep, settings: SettingsDep, request: Request) -> UsageOut:
    """Your key's measured CPU time and storage against its limits; an admin key also gets every key's."""
    caller: Caller = request.state.caller
    everyone = None
    if caller.admin:
        everyone = admin.key_views(client, settings, KeyRegistry(client, settings).all())
    return UsageOut(name=caller.name, admin=caller.admin, limits=admin.limits(client, settings, caller.owner),
                    usage=admin.owner_usage(client, settings, caller.owner), keys=everyone)
