"""API keys: who is calling. A job belongs to the key that created it; the key itself is never stored.

A request's key is turned into an owner id, HMAC-SHA256 of the key with the server's secret
(`ZDL_SECRET_KEY`), and looked up among the named keys in Redis (worker/state/apikeys.py, through the
process's short cache in api/key_cache.py), so neither timing nor logs reveal a key, and the owner ids that
appear in Redis key names cannot be tested against guessed keys without the secret. Without configured
keys (allowed only on loopback, see Settings), every caller on this machine that sends no key is the one
owner `local`, an admin, and calls from other hosts are refused. Admin keys may read and cancel every
key's jobs, manage keys and read service-wide figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.key_cache import KeyCache
from worker.settings import Settings, is_loopback
from worker.state.apikeys import owner_id

__all__ = ["LOCAL_OWNER", "Caller", "OwnerDep", "bearer", "is_admin", "owner_id", "require_owner"]

#: Declares the scheme in the OpenAPI document (the docs' "Authorize" button); checking is ours, below.
bearer = HTTPBearer(auto_error=False, description="an API key (POST /v1/admin/keys, or ZDL_API_KEYS)")
LOCAL_OWNER = "local"


@dataclass(frozen=True)
class Caller:
    """Who sent the request: the owner id, the key's name and whether it is an admin key."""

    owner: str
    name: str
    admin: bool


def unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def key_cache(request: Request) -> KeyCache:
    cache: KeyCache | None = getattr(request.app.state, "key_cache", None)
    if cache is None:
        cache = request.app.state.key_cache = KeyCache(request.app.state.async_redis, request.app.state.settings)
    return cache


async def identify(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    """The caller; 401 (with `WWW-Authenticate: Bearer`) for a missing, unknown or revoked key."""
    settings: Settings = request.app.state.settings
    if credentials is not None:
        entry = await key_cache(request).lookup(owner_id(credentials.credentials, settings))
        if entry is not None:
            return Caller(entry.owner, entry.name, entry.admin)
    if not settings.api_key_list:  # keyless: whoever is on this machine (a key it sends is not checked)
        client = request.client.host if request.client else ""
        if not is_loopback(client):
            raise unauthorized("this service has no API keys configured and accepts requests from this machine only")
        return Caller(LOCAL_OWNER, LOCAL_OWNER, True)
    if credentials is None:
        raise unauthorized("missing API key: send the header `Authorization: Bearer <key>`")
    raise unauthorized("invalid API key")


async def require_owner(request: Request,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    """The caller's owner id (the Caller is kept on `request.state.caller` for `is_admin`, and its key's name
    on `request.state.key_name` for the access log: never the key itself)."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:
        caller = request.state.caller = await identify(request, credentials)
        request.state.key_name = caller.name
    return caller.owner


OwnerDep = Annotated[str, Depends(require_owner)]


def is_admin(request: Request, owner: str) -> bool:
    """Whether `owner`, this request's caller, came from an admin key (the keyless local owner is one)."""
    caller: Caller | None = getattr(request.state, "caller", None)
    return caller is not None and caller.owner == owner and caller.admin


async def require_admin(request: Request, owner: OwnerDep) -> Caller:
    """The caller, if it is an admin; 403 otherwise."""
    if not is_admin(request, owner):
        raise HTTPException(403, "this route needs an admin key")
    caller: Caller = request.state.caller
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]
