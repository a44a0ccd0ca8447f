"""`Client.admin`: the service's keys, everyone's jobs and the workers, for an admin key (the others get 403).

    admin = Client().admin                     # an admin key: `zdl cluster up`'s own, or one made with admin=True
    made = admin.add_key("alice")              # {"name": "alice", "key": "zdl-...", ...}: the key, shown once
    admin.keys()                               # every key with its usage and limits
    admin.revoke_key("alice")                  # refused within a second; her queued and running jobs cancelled
"""

from __future__ import annotations

from typing import Any

from zdl.client.connection import Connection


class Admin:
    """The /v1/admin routes."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add_key(self, name: str, admin: bool = False, **limits: float) -> dict[str, Any]:
        """Make a key named `name` (limits: running_jobs, active_jobs, stored_jobs, stored_mb, core_hours); the
        answer's "key" is the key itself, shown this once. Conflict if the name is in use."""
        body = {"name": name, "admin": admin, "limits": limits}
        return dict(self.connection.json("POST", "/v1/admin/keys", json_body=body))

    def keys(self) -> list[dict[str, Any]]:
        """Every key: name, admin flag, created and last-used times, limits and usage."""
        return list(self.connection.json("GET", "/v1/admin/keys")["items"])

    def revoke_key(self, name: str) -> dict[str, Any]:
        """Revoke the key named `name`: {"name", "cancelled": its queued and running jobs cancelled}."""
        return dict(self.connection.json("DELETE", f"/v1/admin/keys/{name}"))

    def jobs(self, key: str | None = None, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Every key's jobs (or the key named `key`'s), newest first, each with its key's name."""
        params: dict[str, Any] = {"limit": limit, **({"key": key} if key else {}), **({"status": status} if status
                                                                                       else {})}
        return list(self.connection.json("GET", "/v1/admin/jobs", params=params)["items"])

    def workers(self) -> list[dict[str, Any]]:
        """The live workers and the jobs each works on."""
        return list(self.connection.json("GET", "/v1/admin/workers")["items"])
