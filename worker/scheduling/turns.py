"""A job's turn on the block workers: how long its block loop or gang replica may keep a worker while other
work waits, and one look at what can end the turn (a cancel, the job's run changing hands, other work waiting).

Block loops and gangs serve many jobs on few workers: each keeps its worker for a turn of
`block_loop_slice_s` shared among its owner's running jobs, so that each API key, not each job, gets an
equal share; when the turn is over and other block tasks wait in the Celery queue, it makes way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from worker.settings import Settings
from worker.state import keys
from worker.state.cancel import CANCEL_FIELD, cancelled
from worker.state.connection import queued_tasks
from worker.state.keys import JobKeys


@dataclass(frozen=True)
class Look:
    """What a turn's look saw: when (monotonic), whether the job was cancelled, whether the job still runs as
    the run that started this turn, and whether other block tasks wait for a worker."""

    at: float
    cancelled: bool
    current: bool
    others_waiting: bool


class Turn:
    """One job's turn on a block worker: `length` seconds from now, looked at no more often than every
    INTERVAL_S (two round trips: the job's record, and the Celery queue in the broker Redis)."""

    INTERVAL_S = 0.1

    def __init__(self, client: redis.Redis, settings: Settings, job_id: str, owner: str, run: int | None = None
                 ) -> None:
        """client: the main Redis; run: the job's run this turn belongs to (None: not checked)."""
        self.client, self.settings, self.run = client, settings, run
        self.record = JobKeys.of(settings, job_id).record
        self.length = turn_length(client, settings, owner)
        self.ends_at = time.monotonic() + self.length
        self._next_look = 0.0

    def used_up(self, now: float) -> bool:
        return now >= self.ends_at

    def look(self) -> Look | None:
        """A fresh look, or None if the last one is less than INTERVAL_S old."""
        now = time.monotonic()
        if now < self._next_look:
            return None
        self._next_look = now + self.INTERVAL_S
        flag, status, runs = self.client.hmget(self.record, CANCEL_FIELD, "status", "runs")
        waiting = queued_tasks(self.settings, self.settings.blocks_queue)
        current = status == b"running" and runs is not None and int(runs) == self.run
        return Look(now, cancelled(flag), current, bool(waiting))


def turn_length(client: redis.Redis, settings: Settings, owner: str) -> float:
    """How long a loop may keep its worker while other loops wait: `block_loop_slice_s` shared among the
    owner's running jobs, so that each API key, not each job, gets an equal share of the block workers."""
    running = client.zcard(keys.owner_index(settings, owner, "running")) if owner else 1
    return settings.block_loop_slice_s / max(1, running)


def others_waiting(client: redis.Redis, settings: Settings) -> bool:
    """Whether block tasks wait in the Celery queue (in the broker Redis: `queued_tasks`)."""
    return bool(queued_tasks(settings, settings.blocks_queue))
