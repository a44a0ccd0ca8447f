"""Named API keys, managed while the service runs: who may call, under which name, with which limits.

A key is never stored. Its owner id, HMAC-SHA256 of the key with the server secret (`ZDL_SECRET_KEY`),
names a Redis hash that holds the key's name (a student id), its admin flag, when it was made and last
used, and the limits that differ from the settings' defaults. Any API process can create, look up or
revoke a key, so a key made on one is valid on all of them at once, and a revoked one on none after the
API's short cache (api/key_cache.py) has run out. Keys from ZDL_API_KEYS / ZDL_ADMIN_KEYS are entered at
each API start under generated names (`key-1`..., `admin`...), unless they were revoked.

    <p>:apikey:<h>         hash  name, admin, created_at, last_used_at, limits (JSON), origin (env | live)
    <p>:apikey-names       hash  name -> owner id
    <p>:apikeys-revoked    set   owner ids of revoked keys (a revoked ZDL_API_KEYS entry stays revoked)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from worker.settings import Settings
from worker.state.replies import hash_reply, text, transaction

#: A key's name: a student id, a login or a label; lower case so that names never differ by case only.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
#: The limits a key may have of its own, and the settings whose defaults they replace.
LIMIT_SETTINGS = {
    "running_jobs": "max_running_jobs_per_key", "active_jobs": "max_active_jobs_per_key",
    "stored_jobs": "max_stored_jobs_per_key", "stored_mb": "max_stored_mb_per_key",
    "core_hours": "max_core_hours_per_key",
}


class KeyNameTaken(Exception):
    """Another key already has this name (a 409)."""


def owner_id(key: str, settings: Settings) -> str:
    """The owner id of `key`: hex HMAC-SHA256 of the key with the server secret."""
    return hmac.new(settings.secret_key.get_secret_value().encode(), key.encode(), hashlib.sha256).hexdigest()


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"key name {name!r} must be 1-64 characters of a-z, 0-9, '.', '_' and '-', "
                         "starting with a letter or digit")
    return name


@dataclass(frozen=True)
class ApiKey:
    """One key's entry (never the key itself)."""

    owner: str
    name: str
    admin: bool
    created_at: float
    last_used_at: float | None = None
    limits: Mapping[str, float] = field(default_factory=dict)
    origin: str = "live"

    @classmethod
    def from_hash(cls, owner: str, raw: Mapping[str, str]) -> ApiKey:
        last = raw.get("last_used_at")
        return cls(owner, raw["name"], raw.get("admin") == "1", float(raw.get("created_at", 0)),
                   float(last) if last else None, json.loads(raw.get("limits") or "{}"), raw.get("origin", "live"))

    def limit(self, name: str, settings: Settings) -> float:
        """This key's limit `name` (a LIMIT_SETTINGS key): its own, else the setting's."""
        own = self.limits.get(name)
        return own if own is not None else float(getattr(settings, LIMIT_SETTINGS[name]))


class KeyRegistry:
    """Reads and writes of the named keys; one per process (it keeps no state of its own)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client, self.settings = client, settings

    def _entry(self, owner: str) -> str:
        return self.settings.key("apikey", owner)

    @property
    def _names(self) -> str:
        return self.settings.key("apikey-names")

    @property
    def _revoked(self) -> str:
        return self.settings.key("apikeys-revoked")

    def create(self, name: str, admin: bool = False, limits: Mapping[str, float] | None = None) -> tuple[str, ApiKey]:
        """A new random key named `name`: (the key, shown this once; its entry). KeyNameTaken if in use."""
        secret = "zdl-" + secrets.token_urlsafe(24)
        return secret, self.add(secret, check_name(name), admin, limits or {}, origin="live")

    def add(self, secret: str, name: str, admin: bool, limits: Mapping[str, float], origin: str) -> ApiKey:
        """Enter `secret` under `name` (one transaction with the name's check). KeyNameTaken if in use."""
        unknown = set(limits) - set(LIMIT_SETTINGS)
        if unknown:
            raise ValueError(f"unknown key limits {sorted(unknown)}; known: {sorted(LIMIT_SETTINGS)}")
        owner = owner_id(secret, self.settings)
        entry = ApiKey(owner, name, admin, time.time(), None, dict(limits), origin)

        def enter(pipe: redis.client.Pipeline) -> ApiKey:
            if pipe.hexists(self._names, name):
                raise KeyNameTaken(f"a key named {name!r} exists already; revoke it first or choose another name")
            pipe.multi()
            pipe.hset(self._names, name, owner)
            pipe.hset(self._entry(owner), mapping={"name": name, "admin": "1" if admin else "0",
                                                   "created_at": repr(entry.created_at), "origin": origin,
                                                   "limits": json.dumps(dict(limits))})
            pipe.srem(self._revoked, owner)
            return entry

        return transaction(self.client, enter, self._names)

    def get(self, owner: str) -> ApiKey | None:
        raw = hash_reply(self.client.hgetall(self._entry(owner)))
        return ApiKey.from_hash(owner, {k.decode(): v.decode() for k, v in raw.items()}) if raw else None

    def by_name(self, name: str) -> ApiKey | None:
        owner = self.client.hget(self._names, name)
        return self.get(text(owner)) if owner is not None else None

    def all(self) -> list[ApiKey]:
        """Every key, by name."""
        owners = {text(n): text(o) for n, o in hash_reply(self.client.hgetall(self._names)).items()}
        with self.client.pipeline(transaction=False) as pipe:
            for owner in owners.values():
                pipe.hgetall(self._entry(owner))
            raws = pipe.execute()
        return sorted((ApiKey.from_hash(owner, {k.decode(): v.decode() for k, v in raw.items()})
                       for owner, raw in zip(owners.values(), raws, strict=True) if raw), key=lambda k: k.name)

    def revoke(self, name: str) -> ApiKey | None:
        """Forget the key named `name` (its jobs are the caller's business); None if there is none."""
        entry = self.by_name(name)
        if entry is None:
            return None
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self._names, name)
            pipe.delete(self._entry(entry.owner))
            pipe.sadd(self._revoked, entry.owner)
            pipe.execute()
        return entry

    def touch(self, owner: str, when: float) -> None:
        """Note that the key was used (the API calls this at most once per cache period per key)."""
        script = "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1]) end"
        self.client.eval(script, 1, self._entry(owner), repr(when))

    def bootstrap(self) -> list[ApiKey]:
        """Enter the keys of ZDL_API_KEYS (named key-1, key-2, ...) and ZDL_ADMIN_KEYS (admin, admin-2, ...)
        that are neither entered nor revoked; returns those entered now."""
        admins = _split(self.settings.admin_keys.get_secret_value())
        plain = [k for k in _split(self.settings.api_keys.get_secret_value()) if k not in admins]
        entered = []
        for secrets_, stem, admin in ((admins, "admin", True), (plain, "key", False)):
            for secret in secrets_:
                owner = owner_id(secret, self.settings)
                if self.client.exists(self._entry(owner)) or self.client.sismember(self._revoked, owner):
                    continue
                entered.append(self._add_named(secret, stem, admin))
        return entered

    def _add_named(self, secret: str, stem: str, admin: bool) -> ApiKey:
        """Enter `secret` under the first free name of `stem`, `stem-2`, ... (admin keys), `stem-1`, ... (others)."""
        for n in range(1, 10_000):
            name = stem if admin and n == 1 else f"{stem}-{n}"
            try:
                return self.add(secret, name, admin, {}, origin="env")
            except KeyNameTaken:
                continue
        raise RuntimeError(f"no free name for a key of stem {stem!r}")


def limits_of(client: redis.Redis, settings: Settings, owner: str) -> dict[str, float]:
    """The owner's limits (LIMIT_SETTINGS names): its key's own where it has them, else the settings'."""
    raw = client.hget(settings.key("apikey", owner), "limits")
    own = json.loads(text(raw)) if raw else {}
    return {name: float(own[name]) if own.get(name) is not None else float(getattr(settings, setting))
            for name, setting in LIMIT_SETTINGS.items()}


def _split(keys: str) -> list[str]:
    return [k.strip() for k in keys.split(",") if k.strip()]


def entry_fields(entry: ApiKey) -> dict[str, Any]:
    """The public part of an entry: everything but the owner id."""
    return {"name": entry.name, "admin": entry.admin, "created_at": entry.created_at,
            "last_used_at": entry.last_used_at, "limits": dict(entry.limits), "origin": entry.origin}
