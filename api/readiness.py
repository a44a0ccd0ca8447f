"""Whether the service can run a job now: Redis (and the step Redis, if set) answers, and each queue has a
live worker (heartbeats)."""

from __future__ import annotations

from typing import Any

import redis

from worker.scheduling.heartbeat import alive_workers
from worker.settings import Settings


def readiness(client: redis.Redis, settings: Settings,
              step_client: redis.Redis | None = None) -> tuple[bool, dict[str, Any]]:
    """(ready, report); the report names what is missing. step_client: the step Redis, if there is one."""
    try:
        client.ping()
        workers = {q: len(alive_workers(client, settings, q)) for q in (settings.coordinator_queue,
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
