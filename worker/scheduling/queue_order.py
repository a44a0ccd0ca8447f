"""Where a queued job stands: its place in the order the fair scheduler (worker/scheduling/scheduler.py) would start
the queued jobs now, and when it may start.

The scheduler sends, each time a slot frees, the oldest pending job of the key served longest ago among
those under their running limit. So the order now is: jobs already sent to a coordinator (they start
first, in the order sent), then round robin over the keys in the scheduler's order, one job per key per
round, a key's k-th job in round k; a key that already runs as many jobs as its limit joins one round
later per job over it (its jobs wait for one of its own to end). The estimated start plays that order on
the coordinator slots: each slot frees when its running job's `eta_s` says, then after each queued
job's estimated wall time (worker/scheduling/plan.py).
"""

from __future__ import annotations

import heapq

import redis

from worker.scheduling.plan import plan
from worker.scheduling.scheduler import capacity
from worker.settings import Settings
from worker.state import keys
from worker.state.apikeys import limits_of
from worker.state.keys import JobKeys
from worker.state.replies import texts
from zdl.spec import JobSpec


def start_order(client: redis.Redis, settings: Settings) -> list[str]:
    """The queued jobs' ids in the order they would start."""
    sent = texts(client.zrange(keys.dispatched(settings), 0, -1))
    owners = texts(client.zrange(keys.pending(settings), 0, -1))  # least recently served first
    with client.pipeline(transaction=False) as pipe:
        for owner in owners:
            pipe.zrange(keys.pending(settings, owner), 0, -1)
            pipe.zcard(keys.owner_index(settings, owner, "running"))
            pipe.zcard(keys.dispatched(settings, owner))
        replies = pipe.execute()
    ranked: list[tuple[int, int, int, str]] = []
    for i, owner in enumerate(owners):
        pending, running, dispatched = texts(replies[3 * i]), replies[3 * i + 1], replies[3 * i + 2]
        limit = int(limits_of(client, settings, owner)["running_jobs"])
        wait = max(0, int(running) + int(dispatched) - limit + 1)
        ranked.extend((wait + k, i, k, job_id) for k, job_id in enumerate(pending))
    return [*sent, *(job_id for *_, job_id in sorted(ranked))]


def estimated_starts(client: redis.Redis, settings: Settings, order: list[str],
                     live_block_workers: int) -> dict[str, float]:
    """Seconds from now until each job of `order` may start; empty if no coordinator is alive."""
    slots = capacity(client, settings)
    if slots == 0 or not order:
        return {}
    running = texts(client.zrange(keys.jobs_index(settings, "running"), 0, -1))
    with client.pipeline(transaction=False) as pipe:
        for job_id in running:
            pipe.hget(JobKeys.of(settings, job_id).record, "eta_s")
        for job_id in order:
            pipe.hget(JobKeys.of(settings, job_id).record, "spec")
        replies = pipe.execute()
    free_at = sorted(float(eta or 0.0) for eta in replies[:len(running)])[:slots]
    free_at += [0.0] * (slots - len(free_at))
    heapq.heapify(free_at)
    starts = {}
    for job_id, spec in zip(order, replies[len(running):], strict=True):
        start = heapq.heappop(free_at)
        starts[job_id] = start
        heapq.heappush(free_at, start + _wall_s(spec, settings, live_block_workers))
    return starts


def _wall_s(raw_spec: bytes | None, settings: Settings, live_block_workers: int) -> float:
    if raw_spec is None:  # deleted meanwhile: it takes no time
        return 0.0
    spec = JobSpec.model_validate_json(raw_spec)
    return plan(spec, settings, live_block_workers).wall_s(spec.training.iters)


def position_of(client: redis.Redis, settings: Settings, job_id: str,
                live_block_workers: int) -> tuple[int | None, float | None]:
    """(1-based place in the start order, seconds until it may start) of a queued job; None where unknown."""
    order = start_order(client, settings)
    if job_id not in order:
        return None, None
    place = order.index(job_id)
    starts = estimated_starts(client, settings, order[:place + 1], live_block_workers)
    return place + 1, starts.get(job_id)
