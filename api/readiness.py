"""Whether the service can run a job now: Redis (and the step Redis, if set) answers, and each queue has a
live worker (heartbeats). Only an admin sees why a server is unreachable (its address is in the error)
and whether the keys' quotas fit the job store."""

from __future__ import annotations

from typing import Any

import redis

from worker.scheduling.admission import live_workers
from worker.settings import Settings
from worker.state.headroom import quota_warning


def readiness(client: redis.Redis, settings: Settings,
              step_client: redis.Redis | None = None) -> tuple[bool, dict[str, Any]]:
    """(ready, report); the report names what is missing. step_client: the step Redis, if there is one."""
    try:
        client.ping()
        workers = {q: live_workers(client, settings, q) for q in (settings.coordinator_queue,
                                                                          settings.blocks_queue)}
    except redis.RedisError as exc:
        return False, {"status": "unavailable", "redis": f"unreachable: {exc}", "workers": {}}
    if step_client is not None:
        try:
            step_client.ping()
        except redis.RedisError as exc:
            return False, {"status": "unavailable", "redis": "ok", "step_redis": f"unreachable: {exc}",
                           "workers": workers}
    missing = [queue for queue, count in workers.items() if count == 0]
    report: dict[str, Any] = {"status": "ready" if not missing else "unavailable", "redis": "ok", "workers": workers}
    if missing:
        report["detail"] = f"no live worker on {', '.join(missing)}"
    return not missing, report


def for_caller(report: dict[str, Any], admin: bool, client: redis.Redis, settings: Settings) -> dict[str, Any]:
    """The report as the caller may read it: an admin's with the storage check, anyone else's without the
    Redis errors (host names, ports)."""
    if not admin:
        return {k: ("unreachable" if isinstance(v, str) and v.startswith("unreachable") else v)
                for k, v in report.items()}
    try:
        warning = quota_warning(client, settings, len(settings.api_key_list))
    except redis.RedisError:
        warning = None
    return {**report, "storage": warning or "ok"}
