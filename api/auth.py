"""API keys: who is calling. A job belongs to the key that created it; the key itself is never stored.

A request's key is hashed (SHA-256) and compared with every configured key's hash in constant time
(`hmac.compare_digest`, over all keys, no early exit), so neither timing nor logs reveal a key. The
hex digest is the job's `owner`. Without configured keys (allowed only on loopback, see Settings),
every caller on this machine is the one owner `local`, and calls from other hosts are refused.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from worker.settings import Settings, is_loopback

#: Declares the scheme in the OpenAPI document (the docs' "Authorize" button); checking is ours, below.
bearer = HTTPBearer(auto_error=False, description="an API key from ZDL_API_KEYS")
LOCAL_OWNER = "local"


def unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def owner_of(key: str, settings: Settings) -> str | None:
    """The owner id (hex SHA-256) of `key` if it is one of the configured keys, else None."""
    digest = hashlib.sha256(key.encode()).digest()
    matched = False
    for known in settings.api_key_hashes:
        matched |= hmac.compare_digest(digest, known)
    return digest.hex() if matched else None


async def require_owner(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    """The caller's owner id; 401 (with `WWW-Authenticate: Bearer`) for a missing or unknown key."""
    settings: Settings = request.app.state.settings
    if not settings.api_key_hashes:
        client = request.client.host if request.client else ""
        if not is_loopback(client):
            raise unauthorized("this service has no API keys configured and accepts requests from this machine only")
        return LOCAL_OWNER
    if credentials is None:
        raise unauthorized("missing API key: send the header `Authorization: Bearer <key>`")
    owner = owner_of(credentials.credentials, settings)
    if owner is None:
        raise unauthorized("invalid API key")
    return owner


OwnerDep = Annotated[str, Depends(require_owner)]
