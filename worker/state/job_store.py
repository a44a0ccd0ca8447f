"""Job records, history and weights in Redis: the API reads them, the coordinator writes them.

Every change of status is one MULTI transaction (record, per-status index, event), so a reader never
sees a job in two states (on a Redis at maxmemory, one script instead: worker/headroom.py), and a status
only moves along the allowed edges: queued -> running -> succeeded | failed | cancelled, and
queued -> cancelled | failed.
"""

from __future__ import annotations

import builtins
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import redis

from worker.settings import Settings
from worker.state import job_log, keys
from worker.state.apikeys import limits_of
from worker.state.cancel import CANCEL_FIELD
from worker.state.headroom import ending_transaction, ending_write
from worker.state.keys import ACTIVE, FINISHED, STATUSES, JobKeys
from worker.state.quotas import QuotaExceeded, check_core_hours, check_quotas
from worker.state.records import Record, decode_record, encode_fields
from worker.state.replies import as_bytes, hash_reply, maybe_bytes, text, transaction
from worker.state.usage import usage_key
from zdl.datasets import dataset_shape
from zdl.spec import JobSpec

__all__ = ["JobStore", "QuotaExceeded", "Record", "decode_record", "result_bytes"]


def result_bytes(spec: JobSpec) -> int:
    """At most what a job's results take in Redis: weights (.npz of float64), its history (a JSON number of
    about 20 characters per iteration) and its record. Reserved against the owner's quota when it is made."""
    input_size, output_size = dataset_shape(spec.dataset)
    hidden = spec.model.hidden_size
    n_params = input_size * hidden + hidden + hidden * output_size + output_size
    return 8 * n_params + 32 * spec.training.iters + 8192



class JobStore:
    """All reads and writes of job state; one instance per process (it holds no state of its own)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def keys(self, job_id: str) -> JobKeys:
        return JobKeys.of(self.settings, job_id)

    # --- creating and reading -------------------------------------------------------------------

    def create(self, spec: Mapping[str, Any], owner: str, idempotency_key: str | None = None, *,
               reserved_bytes: int = 0, fields: Mapping[str, Any] | None = None) -> tuple[str, bool]:
        """A new queued job of `owner`, or the job an earlier request of theirs with the same Idempotency-Key made.

        Returns (job id, created). The key check, the owner's limits and the creation are one WATCH/MULTI
        transaction, so concurrent requests can neither both create a job for one key nor together exceed
        a limit. Raises QuotaExceeded at a limit: active jobs, stored jobs, or stored bytes, where the job
        reserves `reserved_bytes` (what its results will take) until it is deleted. The job waits in the
        owner's pending queue until the scheduler (worker/scheduling/scheduler.py) sends it to a coordinator.
        """
        ids, created = self.create_many([spec], owner, idempotency_key, reserved_bytes=[reserved_bytes],
                                        fields=fields)
        return ids[0], created

    def create_many(self, specs: Sequence[Mapping[str, Any]], owner: str, idempotency_key: str | None = None, *,
                    reserved_bytes: Sequence[int], fields: Mapping[str, Any] | None = None,
                    also: Callable[[redis.client.Pipeline, list[str]], None] | None = None) -> tuple[list[str], bool]:
        """`create` for several jobs at once (a sweep's): all of them are created, or none.

        The owner's limits are checked for all the jobs together, in the same transaction as their creation.
        Returns (the new ids in the order of `specs`, True), or ([the first job an earlier request with the
        same Idempotency-Key made], False). `also(pipe, ids)` queues more writes into the transaction (the
        record of the sweep that lists the jobs), so they are stored together with the jobs or not at all.
        """
        if not specs or len(reserved_bytes) != len(specs):
            raise ValueError(f"create_many: {len(specs)} specs and {len(reserved_bytes)} reservations")
        job_ids = [uuid.uuid4().hex for _ in specs]
        now = time.time()
        created = {job_id: now + 1e-6 * i for i, job_id in enumerate(job_ids)}  # distinct: queues keep their order
        records = [encode_fields({**(fields or {}), "id": job_id, "status": "queued", "spec": dict(spec),
                            "created_at": created[job_id], "owner": owner, "iteration": 0,
                            "total": spec["training"]["iters"], "reserved_bytes": reserved,
                            "idempotency_key": idempotency_key if job_id == job_ids[0] else None})
                   for job_id, spec, reserved in zip(job_ids, specs, reserved_bytes, strict=True)]
        idem = keys.idempotency(self.settings, owner, idempotency_key) if idempotency_key else None
        active = [keys.owner_index(self.settings, owner, s) for s in ACTIVE]
        stored, used = keys.owner_index(self.settings, owner), keys.owner_bytes(self.settings, owner)
        more_bytes = sum(reserved_bytes)
        limits = limits_of(self.client, self.settings, owner)

        def create_all(pipe: redis.client.Pipeline) -> tuple[list[str], bool]:
            if idem is not None and (existing := pipe.get(idem)) is not None:
                return [text(existing)], False
            check_core_hours(float(pipe.hget(usage_key(self.settings, owner), "cpu_seconds") or 0.0),
                             limits["core_hours"])
            check_quotas(self.settings, sum(pipe.zcard(index) for index in active), pipe.zcard(stored),
                         int(pipe.get(used) or 0), more_bytes, limits, count=len(specs))
            pipe.multi()
            for job_id, record in zip(job_ids, records, strict=True):
                pipe.hset(self.keys(job_id).record, mapping=record)
                job_log.append(pipe, self.settings, job_id, "queued")
            for index in (keys.jobs_index(self.settings), keys.jobs_index(self.settings, "queued"),
                          stored, keys.owner_index(self.settings, owner, "queued"), keys.pending(self.settings, owner)):
                pipe.zadd(index, created)
            pipe.zadd(keys.pending(self.settings), {owner: 0}, nx=True)  # a new owner is served first
            pipe.incrby(used, more_bytes)
            if idem is not None:
                pipe.set(idem, job_ids[0], ex=self.settings.idempotency_ttl_s)
            if also is not None:
                also(pipe, job_ids)
            return job_ids, True

        watched = [*active, stored, used, *([idem] if idem is not None else [])]
        return transaction(self.client, create_all, *watched)

    def get(self, job_id: str) -> Record | None:
        raw = self.client.hgetall(self.keys(job_id).record)
        return decode_record(hash_reply(raw)) if raw else None

    def list(self, owner: str, status: str | None = None, offset: int = 0,
             limit: int = 20) -> tuple[int, list[Record]]:
        """The owner's jobs newest first, optionally of one status: (total matching, the page)."""
        index = keys.owner_index(self.settings, owner, status)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zcard(index)
            pipe.zrevrange(index, offset, offset + limit - 1)
            total, ids = pipe.execute()
        with self.client.pipeline(transaction=False) as pipe:
            for raw_id in ids:
                pipe.hgetall(self.keys(raw_id.decode()).record)
            raws = pipe.execute()
        return int(total), [decode_record(raw) for raw in raws if raw]

    def counts(self, owner: str | None = None) -> dict[str, int]:
        """Number of jobs in each status: everyone's, or one owner's."""
        with self.client.pipeline(transaction=False) as pipe:
            for status in STATUSES:
                pipe.zcard(keys.jobs_index(self.settings, status) if owner is None
                           else keys.owner_index(self.settings, owner, status))
            return dict(zip(STATUSES, map(int, pipe.execute()), strict=True))

    def history(self, job_id: str) -> dict[str, Any] | None:
        """The zdl History as a dict: the final one once stored, else what has been recorded so far."""
        k = self.keys(job_id)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.get(k.history)
            pipe.lrange(k.loss, 0, -1)
            pipe.lrange(k.epochs, 0, -1)
            pipe.hmget(k.record, "spec", "elapsed_s", "gradient_s")
            final, losses, epochs, (spec, elapsed, grad_time) = pipe.execute()
        if final is not None:
            return dict(json.loads(final))
        if spec is None:
            return None
        points = [json.loads(e) for e in epochs]
        return {
            "loss": [float(v) for v in losses],
            "epoch_iters": [p["iteration"] for p in points],
            "train_acc": [p["train_acc"] for p in points],
            "test_acc": [p["test_acc"] for p in points],
            "wall_time": float(elapsed or 0.0),
            "gradient_time": float(grad_time or 0.0),
            "config": {},
        }

    def weights(self, job_id: str) -> bytes | None:
        return maybe_bytes(self.client.get(self.keys(job_id).weights))

    # --- status changes ---------------------------------------------------------------------------

    def transition(self, job_id: str, to: str, allowed: Iterable[str], **fields: Any) -> bool:
        """Move the job to status `to` if it is now in one of `allowed`; False (and no change) otherwise.

        A job leaving `queued` leaves the scheduler's queues; a job that ends loses its checkpoint and, with
        a retention time, is listed for deletion then.
        """
        k = self.keys(job_id)
        allowed = tuple(allowed)
        event = {"type": "status", "status": to, **({"error": fields["error"]} if fields.get("error") else {})}

        def move(pipe: redis.client.Pipeline) -> bool:
            current, created, owner = map(maybe_bytes, pipe.hmget(k.record, "status", "created_at", "owner"))
            if current is None or current.decode() not in allowed:
                return False
            pipe.multi()
            pipe.hset(k.record, mapping=encode_fields({"status": to, **fields}))
            for index in self._status_indexes(owner):
                pipe.zrem(index(current.decode()), job_id)
                pipe.zadd(index(to), {job_id: float(created or 0)})  # lists stay in creation order
            if current == b"queued" and owner is not None:
                self._unschedule(pipe, job_id, owner.decode())
            if to in FINISHED:
                pipe.delete(k.checkpoint)
                if self.settings.job_ttl_s and owner is not None:
                    pipe.zadd(keys.expiring(self.settings), {f"{owner.decode()}:{job_id}": time.time()
                                                             + self.settings.job_ttl_s})
            pipe.publish(k.events, json.dumps(event))
            if to in FINISHED:
                job_log.append(pipe, self.settings, job_id, "finished", status=to, why=fields.get("error"))
            return True

        return ending_transaction(self.client, self.settings, move, k.record, guard=(k.record, "status"))

    def _unschedule(self, pipe: redis.client.Pipeline, job_id: str, owner: str) -> None:
        pipe.zrem(keys.pending(self.settings, owner), job_id)
        pipe.zrem(keys.dispatched(self.settings), job_id)
        pipe.zrem(keys.dispatched(self.settings, owner), job_id)

    def request_cancel(self, job_id: str) -> Record | None:
        """Cancel a queued job at once; flag a running one for its coordinator; leave finished ones."""
        if self.transition(job_id, "cancelled", ["queued"], finished_at=time.time()):
            return self.get(job_id)
        k = self.keys(job_id)

        def flag(pipe: redis.client.Pipeline) -> None:
            if pipe.hget(k.record, "status") == b"running":  # never re-creates a deleted record
                pipe.multi()
                pipe.hset(k.record, CANCEL_FIELD, 1)
                job_log.append(pipe, self.settings, job_id, "cancel_asked")

        ending_transaction(self.client, self.settings, flag, k.record, guard=(k.record, "status"))
        return self.get(job_id)

    def finish(self, job_id: str, status: str, *, weights: bytes | None = None,
               history: Mapping[str, Any] | None = None, **fields: Any) -> bool:
        """Store the results, then move running -> `status` (results first: a reader seeing
        `succeeded` can always fetch them). The final history replaces the per-iteration lists (it holds
        the same numbers), so a job's history is stored once."""
        k = self.keys(job_id)
        history_json = json.dumps(history) if history is not None else None

        def store_results() -> None:
            with self.client.pipeline() as pipe:
                pipe.delete(k.checkpoint)  # the results replace it (about the same size)
                if weights is not None:
                    pipe.set(k.weights, weights)
                if history_json is not None:
                    pipe.set(k.history, history_json)
                    pipe.delete(k.loss, k.epochs)
                pipe.execute()

        try:
            ending_write(self.client, self.settings, store_results)
        except redis.exceptions.OutOfMemoryError:  # no room even with the reserve: end it, with the reason
            return self.fail(job_id, "the job store (Redis) was full when this job's results were to be stored; "
                                     "they were not kept")
        stored = len(weights or b"") + len(history_json or "")
        return self.transition(job_id, status, ["running"], finished_at=time.time(), stored_bytes=stored, **fields)

    def fail(self, job_id: str, error: str, **fields: Any) -> bool:
        """End a queued or running job as failed with a readable reason (and any other fields to record)."""
        return self.transition(job_id, "failed", ["queued", "running"], finished_at=time.time(), error=error,
                               **fields)

    def delete(self, job_id: str) -> str:
        """Remove a finished job and all its data: "deleted", "missing" or "busy" (not finished)."""
        k = self.keys(job_id)

        def remove(pipe: redis.client.Pipeline) -> str:
            status, idem, owner, reserved = map(maybe_bytes, pipe.hmget(k.record, "status", "idempotency_key",
                                                                        "owner", "reserved_bytes"))
            if status is None:
                return "missing"
            if status.decode() not in FINISHED:
                return "busy"
            pipe.multi()
            pipe.delete(*k.data_keys())
            for index in self._status_indexes(owner):
                for name in (None, *STATUSES):
                    pipe.zrem(index(name), job_id)
            if owner is not None:
                self._unschedule(pipe, job_id, owner.decode())
                pipe.zrem(keys.expiring(self.settings), f"{owner.decode()}:{job_id}")
                pipe.decrby(keys.owner_bytes(self.settings, owner.decode()), int(reserved or 0))
                if idem is not None:
                    pipe.delete(keys.idempotency(self.settings, owner.decode(), idem.decode()))
            return "deleted"

        return ending_transaction(self.client, self.settings, remove, k.record, guard=(k.record, "status"))

    def delete_expired(self, now: float | None = None, limit: int = 100) -> builtins.list[str]:
        """Delete up to `limit` finished jobs whose retention time has passed; returns their ids."""
        index = keys.expiring(self.settings)
        due = self.client.zrangebyscore(index, "-inf", time.time() if now is None else now, start=0, num=limit)
        deleted = []
        for member in due:
            _, _, job_id = text(member).rpartition(":")
            if self.delete(job_id) == "deleted":
                deleted.append(job_id)
            self.client.zrem(index, as_bytes(member))  # also when the job was deleted meanwhile
        return deleted

    def _status_indexes(self, owner: bytes | None) -> builtins.list[Callable[[str | None], str]]:
        """The index families a job is in: everyone's, and its owner's."""
        families: builtins.list[Callable[[str | None], str]] = [lambda status: keys.jobs_index(self.settings, status)]
        if owner is not None:
            families.append(lambda status: keys.owner_index(self.settings, owner.decode(), status))
        return families

    # --- progress while running -------------------------------------------------------------------

    def record_progress(self, pipe: redis.client.Pipeline, job_id: str, losses: Sequence[float],
                        epochs: Sequence[Mapping[str, Any]], fields: Mapping[str, Any],
                        event: Mapping[str, Any] | None) -> None:
        """Queue a batch of iterations' bookkeeping on `pipe`; its last reply is the cancel flag."""
        k = self.keys(job_id)
        if losses:
            pipe.rpush(k.loss, *map(repr, losses))
        if epochs:
            pipe.rpush(k.epochs, *(json.dumps(dict(e)) for e in epochs))
        pipe.hset(k.record, mapping=encode_fields(fields))
        if event is not None:
            pipe.publish(k.events, json.dumps({"type": "progress", **event}))
        pipe.hget(k.record, CANCEL_FIELD)
