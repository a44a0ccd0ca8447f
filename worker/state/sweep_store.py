"""Sweeps in Redis: many jobs made from one request, created together, read, cancelled and deleted together.

A sweep's jobs are ordinary jobs (`JobStore`): counted in their owner's quotas, scheduled like any other
job, private to the key. The sweep itself is a small record that lists them, written in the transaction
that creates them (`JobStore.create_many`), so a sweep never exists half-made and a sweep that does not
fit the owner's quotas leaves nothing behind. Jobs expire on their own (ZDL_JOB_TTL_DAYS) or are deleted
one by one; a sweep with none of its jobs left is forgotten the next time its owner lists or makes
sweeps, so a key never keeps more sweep records than it may keep jobs.
"""

from __future__ import annotations

import builtins
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from worker.state import keys
from worker.state.job_store import JobStore, Record, decode_record
from worker.state.keys import FINISHED
from worker.state.replies import hash_reply, text, texts

_JSON = frozenset({"request", "jobs", "params"})


def decode_sweep(raw: Mapping[bytes, bytes]) -> Record:
    """A sweep record from its Redis hash."""
    record: Record = {}
    for key_bytes, value_bytes in raw.items():
        key, value = key_bytes.decode(), value_bytes.decode()
        record[key] = json.loads(value) if key in _JSON else float(value) if key == "created_at" else value
    return record


class SweepStore:
    """All reads and writes of sweeps; the jobs themselves go through the `JobStore` it is given."""

    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs
        self.client: redis.Redis = jobs.client
        self.settings = jobs.settings

    def create(self, owner: str, request: Mapping[str, Any], specs: Sequence[Mapping[str, Any]],
               params: Sequence[Mapping[str, Any]], reserved_bytes: Sequence[int],
               idempotency_key: str | None = None) -> tuple[str | None, bool]:
        """Make the sweep and its queued jobs (one per spec; `params` are each job's varied settings), all or
        nothing. Returns (sweep id, True); for a repeated Idempotency-Key (the sweep that key made, False), or
        (None, False) when the key was used for a job that is not part of a sweep.

        Raises worker.state.job_store.QuotaExceeded if the jobs do not all fit the owner's quotas.
        """
        self.forget_empty(owner)
        sweep_id, now = uuid.uuid4().hex, time.time()

        def write_sweep(pipe: redis.client.Pipeline, job_ids: list[str]) -> None:
            pipe.hset(keys.sweep(self.settings, sweep_id), mapping={
                "id": sweep_id, "owner": owner, "created_at": repr(now), "request": json.dumps(dict(request)),
                "jobs": json.dumps(job_ids), "params": json.dumps([dict(p) for p in params])})
            pipe.zadd(keys.owner_sweeps(self.settings, owner), {sweep_id: now})

        job_ids, created = self.jobs.create_many(specs, owner, idempotency_key, reserved_bytes=reserved_bytes,
                                                 fields={"sweep": sweep_id}, also=write_sweep)
        if created:
            return sweep_id, True
        first = self.jobs.get(job_ids[0])
        return (first or {}).get("sweep"), False

    def get(self, sweep_id: str) -> Record | None:
        raw = self.client.hgetall(keys.sweep(self.settings, sweep_id))
        return decode_sweep(hash_reply(raw)) if raw else None

    def list(self, owner: str, offset: int = 0, limit: int = 20) -> tuple[int, list[Record]]:
        """The owner's sweeps, newest first: (total, the page)."""
        self.forget_empty(owner)
        index = keys.owner_sweeps(self.settings, owner)
        total = int(self.client.zcard(index))
        ids = self.client.zrevrange(index, offset, offset + limit - 1)
        with self.client.pipeline(transaction=False) as pipe:
            for raw_id in ids:
                pipe.hgetall(keys.sweep(self.settings, text(raw_id)))
            raws = pipe.execute()
        return total, [decode_sweep(raw) for raw in raws if raw]

    def job_records(self, sweep: Record) -> builtins.list[Record | None]:
        """The sweep's job records in the sweep's order; None for a job deleted (or expired) since."""
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in sweep["jobs"]:
                pipe.hgetall(self.jobs.keys(job_id).record)
            return [decode_record(raw) if raw else None for raw in pipe.execute()]

    def cancel(self, sweep: Record) -> None:
        """Cancel every job of the sweep: queued ones at once, running ones at their next iteration."""
        for job_id in sweep["jobs"]:
            self.jobs.request_cancel(job_id)

    def delete(self, sweep: Record) -> str:
        """Delete the sweep and all its jobs: "deleted", or "busy" (nothing deleted) while any job is queued or
        running."""
        if any(job is not None and job["status"] not in FINISHED for job in self.job_records(sweep)):
            return "busy"
        for job_id in sweep["jobs"]:
            self.jobs.delete(job_id)  # "missing" for one deleted before: nothing left to do
        self._forget(sweep["id"], sweep["owner"])
        return "deleted"

    def forget_empty(self, owner: str) -> builtins.list[str]:
        """Drop the owner's sweep records whose jobs are all gone (expired or deleted); returns their ids."""
        index = keys.owner_sweeps(self.settings, owner)
        ids = texts(self.client.zrange(index, 0, -1))
        with self.client.pipeline(transaction=False) as pipe:
            for sweep_id in ids:
                pipe.hget(keys.sweep(self.settings, sweep_id), "jobs")
            job_lists = [json.loads(raw) if raw else [] for raw in pipe.execute()]
        with self.client.pipeline(transaction=False) as pipe:
            for job_ids in job_lists:  # no list: the record went meanwhile; "-" is no key, so it counts as empty
                pipe.exists(*(self.jobs.keys(job_id).record for job_id in job_ids or ["-"]))
            remaining = [int(n) for n in pipe.execute()]
        empty = [sweep_id for sweep_id, n in zip(ids, remaining, strict=True) if n == 0]
        for sweep_id in empty:
            self._forget(sweep_id, owner)
        return empty

    def _forget(self, sweep_id: str, owner: str) -> None:
        with self.client.pipeline() as pipe:
            pipe.delete(keys.sweep(self.settings, sweep_id))
            pipe.zrem(keys.owner_sweeps(self.settings, owner), sweep_id)
            pipe.execute()
