"""What the admin routes do beyond HTTP: keys with their usage, revocation, everyone's jobs, the workers.

Kept out of the routes (api/routes/admin.py) so that each route reads as check, call, return.
"""

from __future__ import annotations

from typing import Any

import redis
from fastapi import HTTPException

from api.admin_models import AdminJobOut, KeyOut, Limits, Usage, WorkerOut
from api.jobs import job_out
from worker.scheduling.busy import workers_and_jobs
from worker.scheduling.queue_order import start_order
from worker.settings import Settings
from worker.state import keys, usage
from worker.state.apikeys import ApiKey, KeyRegistry, limits_of
from worker.state.job_store import JobStore
from worker.state.replies import texts


def key_views(client: redis.Redis, settings: Settings, entries: list[ApiKey]) -> list[KeyOut]:
    """Each key's entry with its limits and usage (two round trips for all of them)."""
    totals = usage.totals(client, settings, [e.owner for e in entries])
    return [KeyOut(name=e.name, admin=e.admin, created_at=e.created_at, last_used_at=e.last_used_at, origin=e.origin,
                   limits=limits(client, settings, e.owner), usage=Usage(**totals[e.owner])) for e in entries]


def limits(client: redis.Redis, settings: Settings, owner: str) -> Limits:
    own = limits_of(client, settings, owner)
    return Limits(running_jobs=int(own["running_jobs"]), active_jobs=int(own["active_jobs"]),
                  stored_jobs=int(own["stored_jobs"]), stored_mb=own["stored_mb"], core_hours=own["core_hours"])


def owner_usage(client: redis.Redis, settings: Settings, owner: str) -> Usage:
    return Usage(**usage.totals(client, settings, [owner])[owner])


def revoke(store: JobStore, name: str) -> tuple[ApiKey, int]:
    """Revoke the key named `name` and cancel its queued and running jobs: (its entry, jobs cancelled)."""
    entry = KeyRegistry(store.client, store.settings).revoke(name)
    if entry is None:
        raise HTTPException(404, f"no key is named {name!r}")
    active = [job_id for status in keys.ACTIVE
              for job_id in texts(store.client.zrange(keys.owner_index(store.settings, entry.owner, status), 0, -1))]
    cancelled = sum(1 for job_id in active if store.request_cancel(job_id) is not None)
    return entry, cancelled


def list_jobs(store: JobStore, key: str | None, status: str | None, offset: int, limit: int,
              live: int) -> tuple[int, list[AdminJobOut]]:
    """Every key's jobs (or one key's), newest first, with their key's name and a queued job's place."""
    settings, client = store.settings, store.client
    registry = KeyRegistry(client, settings)
    names = {e.owner: e.name for e in registry.all()}
    if key is not None:
        entry = registry.by_name(key)
        if entry is None:
            raise HTTPException(404, f"no key is named {key!r}")
        index = keys.owner_index(settings, entry.owner, status)
    else:
        index = keys.jobs_index(settings, status)
    total = int(client.zcard(index))
    ids = texts(client.zrevrange(index, offset, offset + limit - 1))
    records = [r for r in (store.get(job_id) for job_id in ids) if r is not None]
    order = {job_id: place + 1 for place, job_id in enumerate(start_order(client, settings))}
    return total, [_admin_view(r, settings, live, names, order) for r in records]


def _admin_view(record: dict[str, Any], settings: Settings, live: int, names: dict[str, str],
                order: dict[str, int]) -> AdminJobOut:
    out = job_out(record, settings, live)
    owner = record.get("owner", "")
    place = order.get(record["id"]) if record["status"] == "queued" else None
    return AdminJobOut(**{**out.model_dump(), "queue_position": place},
                       key=names.get(owner, "local" if owner == "local" else None))


def workers(client: redis.Redis, settings: Settings) -> list[WorkerOut]:
    """Every live worker: its queue, its slots and the jobs it works on now."""
    out = []
    for queue, role in ((settings.coordinator_queue, "coordinator"), (settings.blocks_queue, "blocks")):
        busy = workers_and_jobs(client, settings, queue)
        slots = client.hmget(keys.slots(settings, queue), list(busy)) if busy else []
        for (name, jobs), raw in zip(busy.items(), slots, strict=True):
            out.append(WorkerOut(name=name, queue=queue, role=role, slots=int(raw or 1), jobs=sorted(jobs)))
    return out
