"""Measured usage: the CPU time each job's work took, in every process that did some of it, per job and per key.

Estimates (zdl.engine.cost) decide what may run; this records what did. The coordinator (its process's CPU
clock: one job per pool process) and each block loop or gang replica (the thread's CPU clock, or the
process's when a block group uses several threads) measure their own work with a `CpuMeter`, which adds
it every few seconds and at the end to the job's record (`cpu_seconds`) and to its key's total, in one
script, so a key's total is always the sum of what its jobs recorded (deleted jobs included: the total
is what the key has used, not what it still stores).

    <p>:owner:<h>:usage   hash  cpu_seconds (float): all CPU time measured for the key's jobs
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from worker.settings import Settings
from worker.state import keys
from worker.state.keys import JobKeys

log = logging.getLogger(__name__)

#: A meter writes what it measured at most this often (and at the end).
FLUSH_S = 2.0

_ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBYFLOAT', KEYS[1], 'cpu_seconds', ARGV[1])
redis.call('HINCRBYFLOAT', KEYS[2], 'cpu_seconds', ARGV[1])
return 1
"""


def usage_key(settings: Settings, owner: str) -> str:
    return keys.owner_key(settings, owner, "usage")


def add_cpu(client: redis.Redis, settings: Settings, job_id: str, owner: str, seconds: float) -> bool:
    """Add `seconds` to the job's `cpu_seconds` and its owner's total, both or (job deleted) neither."""
    return bool(client.eval(_ADD, 2, JobKeys.of(settings, job_id).record, usage_key(settings, owner), repr(seconds)))


class CpuMeter:
    """The CPU time of one job's work in this process since the meter was made, written as it accrues."""

    def __init__(self, client: redis.Redis, settings: Settings, job_id: str, owner: str,
                 clock: Callable[[], float] = time.thread_time) -> None:
        self.client, self.settings, self.job_id, self.owner, self.clock = client, settings, job_id, owner, clock
        self.mark = clock()
        self.written_at = time.monotonic()

    def tick(self) -> None:
        """Write what accrued if FLUSH_S has passed since the last write."""
        if time.monotonic() - self.written_at >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write what accrued since the last write (kept for the next one if Redis is away)."""
        now = self.clock()
        self.written_at = time.monotonic()
        if now <= self.mark or not self.owner:
            return
        try:
            add_cpu(self.client, self.settings, self.job_id, self.owner, now - self.mark)
        except redis.RedisError as exc:
            log.warning("job %s: could not record %.3f CPU seconds (%s)", self.job_id, now - self.mark, exc)
            return
        self.mark = now


def block_clock(settings: Settings) -> Callable[[], float]:
    """A block worker's clock for one job's work: the thread's, or the process's when groups use threads."""
    return time.thread_time if settings.block_threads == 1 else time.process_time


def cpu_seconds(client: redis.Redis, settings: Settings, owners: list[str]) -> dict[str, float]:
    """Each owner's measured CPU seconds."""
    with client.pipeline(transaction=False) as pipe:
        for owner in owners:
            pipe.hget(usage_key(settings, owner), "cpu_seconds")
        return {owner: float(raw or 0.0) for owner, raw in zip(owners, pipe.execute(), strict=True)}


def totals(client: redis.Redis, settings: Settings, owners: list[str]) -> dict[str, dict[str, Any]]:
    """Per owner: measured CPU seconds, jobs by status, stored jobs and the bytes reserved for their results."""
    used = cpu_seconds(client, settings, owners)
    with client.pipeline(transaction=False) as pipe:
        for owner in owners:
            for status in keys.STATUSES:
                pipe.zcard(keys.owner_index(settings, owner, status))
            pipe.zcard(keys.owner_index(settings, owner))
            pipe.get(keys.owner_bytes(settings, owner))
        replies = pipe.execute()
    width = len(keys.STATUSES) + 2
    out = {}
    for i, owner in enumerate(owners):
        row = replies[i * width:(i + 1) * width]
        out[owner] = {"cpu_seconds": used[owner], "jobs": dict(zip(keys.STATUSES, map(int, row[:-2]), strict=True)),
                      "stored_jobs": int(row[-2]), "stored_bytes": int(row[-1] or 0)}
    return out
