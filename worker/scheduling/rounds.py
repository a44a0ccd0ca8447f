"""A coordinator worker's rounds, every heartbeat: resume jobs whose coordinator died, start queued jobs in
free slots, delete finished jobs whose retention time has passed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from worker.scheduling import recovery, scheduler
from worker.settings import Settings
from worker.state.job_store import JobStore


def look_after_jobs(client: redis.Redis, settings: Settings, enqueue: Callable[[str], Any]) -> None:
    """One round; `enqueue` sends a job's id to the coordinator queue."""
    recovery.recover_orphans(client, settings, enqueue)
    scheduler.dispatch(client, settings, enqueue)
    JobStore(client, settings).delete_expired()
