"""API keys: who is calling. A job belongs to the key that created it; the key itself is never stored.

A request's key is turned into an owner id, HMAC-SHA256 of the key with the server's secret
(`ZDL_SECRET_KEY`), and compared with every configured key's id in constant time (`hmac.compare_digest`,
over all keys, no early exit), so neither timing nor logs reveal a key, and the owner ids that appear in
Redis key names cannot be tested against guessed keys without the secret. Without configured keys
(allowed only on loopback, see Settings), every caller on this machine is the one owner `local`, and
calls from other hosts are refused. Admin keys (`ZDL_ADMIN_KEYS`) are API keys that may also read
service-wide figures.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from worker.settings import Settings, is_loopback

#: Declares the scheme in the OpenAPI document (the docs' "Authorize" button); checking is ours, below.
bearer = HTTPBearer(auto_error=False, description="an API key from ZDL_API_KEYS")
LOCAL_OWNER = "local"


def unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def owner_id(key: str, settings: Settings) -> str:
    """The owner id of `key`: hex HMAC-SHA256 of the key with the server secret."""
    return hmac.new(settings.secret_key.get_secret_value().encode(), key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """The configured keys as owner ids (computed once per app), and which of them are admins."""

    owners: tuple[str, ...]
    admins: frozenset[str]

    @classmethod
    def of(cls, settings: Settings) -> KeyRing:
        admins = frozenset(owner_id(k, settings) for k in settings.admin_keys.get_secret_value().split(",")
                           if k.strip())
        return cls(tuple(owner_id(k, settings) for k in settings.api_key_list), admins)

    def owner_of(self, key: str, settings: Settings) -> str | None:
        """The owner id of `key` if it is one of the configured keys, else None (constant time over all keys)."""
        candidate = owner_id(key, settings).encode()
        matched = False
        for known in self.owners:
            matched |= hmac.compare_digest(candidate, known.encode())
        return candidate.decode() if matched else None


def keyring(request: Request) -> KeyRing:
    ring: KeyRing | None = getattr(request.app.state, "keyring", None)
    if ring is None:
        ring = request.app.state.keyring = KeyRing.of(request.app.state.settings)
    return ring


async def require_owner(request: Request,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    """The caller's owner id; 401 (with `WWW-Authenticate: Bearer`) for a missing or unknown key."""
    settings: Settings = request.app.state.settings
    if not settings.api_key_list:
        client = request.client.host if request.client else ""
        if not is_loopback(client):
            raise unauthorized("this service has no API keys configured and accepts requests from this machine only")
        return LOCAL_OWNER
    if credentials is None:
        raise unauthorized("missing API key: send the header `Authorization: Bearer <key>`")
    owner = keyring(request).owner_of(credentials.credentials, settings)
    if owner is None:
        raise unauthorized("invalid API key")
    request.state.key_name = owner[:12]  # for the access log (api/access_log.py): never the key itself
    return owner


OwnerDep = Annotated[str, Depends(require_owner)]


def is_admin(request: Request, owner: str) -> bool:
    """Whether `owner` came from an admin key (the keyless local owner is the whole service's only user)."""
    return owner == LOCAL_OWNER or owner in keyring(request).admins
