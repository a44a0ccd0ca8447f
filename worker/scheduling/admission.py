"""What the web tier may know of scheduling: the workers alive on a queue, and a job's plan (its cost, and
the refusal of what the cluster cannot finish: `worker.scheduling.plan`). The API imports this, not the
heartbeat or plan modules, so the scheduler's inner workings can change without touching it."""

from __future__ import annotations

import redis

from worker.scheduling.heartbeat import alive_workers
from worker.scheduling.plan import JobPlan, machine_speed_of, plan, refusal
from worker.settings import Settings

__all__ = ["JobPlan", "live_workers", "machine_speed_of", "plan", "refusal"]


def live_workers(client: redis.Redis, settings: Settings, queue: str) -> int:
    """How many workers heartbeat on `queue` now."""
    return len(alive_workers(client, settings, queue))
