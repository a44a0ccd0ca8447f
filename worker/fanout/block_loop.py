"""A block loop: one Celery task that serves a job run's block requests step after step.

A Celery task per block group per step cost the coordinator ~1 ms per send and the worker as much again
to receive it, every step, on a machine where the whole step is ~13 ms of compute. So the coordinator
sends Celery tasks only to start loops (`LoopStart`); each step it pushes its requests (`BlockRequest`
JSON) onto the run's Redis list, and the loops, blocked in BLPOP, wake the moment they arrive. Any loop
of the run serves any group, so fewer workers than groups still finish every step.

A loop ends when it has had no request for `block_loop_idle_s`, when the coordinator has closed the
run, when its worker is shutting down, or after `block_loop_slice_s` of work if other block tasks wait
in the Celery queue (so concurrent jobs take turns). Ending cannot strand a request: the loop takes
itself out of the run's loops hash and pops the list in one transaction, and serves what it popped; the
coordinator pushes first and reads the hash after, so a request pushed later finds the loop gone and
the coordinator starts another.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from worker.fanout.blocks import BlockRequest, compute_group
from worker.settings import Settings
from worker.state import keys
from worker.state.errors import GroupCancelled, GroupHandedBack
from worker.state.keys import JobKeys, RunKeys
from worker.state.replies import as_bytes
from worker.state.transfer import StepData

log = logging.getLogger(__name__)

#: Pushed by the coordinator when it closes a run: wakes the run's loops so they end at once.
STOP = b"stop"

#: Enter the loops hash only if the coordinator still lists this loop (not closed, not replaced as lost).
_ENTER = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class LoopStart:
    """What a loop's Celery message carries (as JSON): which run to serve, the loop's id in its hash, and the
    job's owner (whose number of running jobs sets the loop's share of a worker)."""

    job_id: str
    run_prefix: str
    loop_id: str
    owner: str = ""

    @property
    def keys(self) -> RunKeys:
        return RunKeys(self.run_prefix)

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "run_prefix": self.run_prefix, "loop_id": self.loop_id, "owner": self.owner}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoopStart:
        return cls(str(data["job_id"]), str(data["run_prefix"]), str(data["loop_id"]), str(data.get("owner", "")))


def encode_request(request: BlockRequest) -> bytes:
    return json.dumps(request.to_dict()).encode()


def serve(client: redis.Redis, data: StepData, settings: Settings, start: LoopStart, worker: str,
          stopping: Callable[[], bool] = lambda: False) -> int:
    """Serve the run's requests until it is time to end (see the module docstring); returns how many.

    client: the main Redis (the Celery queues); data: where the run's requests and arrays are.
    """
    keys = start.keys
    if not data.client.eval(_ENTER, 1, keys.loops, start.loop_id, worker):
        log.info("job %s: loop %s is no longer wanted; ending", start.job_id, start.loop_id)
        return 0
    served = 0
    turn = Turn(client, settings, start)
    last_request = time.monotonic()
    try:
        while not stopping():
            try:
                item = data.client.blpop([keys.requests], timeout=settings.block_poll_s)
            except redis.RedisError as exc:  # Redis away: the coordinator resumes the job as a new run anyway
                log.warning("job %s: block loop lost Redis (%s)", start.job_id, exc)
                if time.monotonic() - last_request >= settings.block_loop_idle_s:
                    return served
                time.sleep(settings.block_poll_s)
                continue
            now = time.monotonic()
            if item is None:
                if now - last_request >= settings.block_loop_idle_s or _others_waiting(client, settings) or \
                        not data.client.hexists(keys.loops, start.loop_id):
                    break
                continue
            if item[1] == STOP:
                break
            served += _serve_one(data, settings, start, as_bytes(item[1]), worker, turn)
            last_request = time.monotonic()
            if last_request >= turn.ends_at:
                turn.ends_at = last_request + turn.length
                if _others_waiting(client, settings):
                    break
        return served + _leave(data, settings, start, worker, turn)
    except GroupHandedBack:
        return served


class Turn:
    """A loop's turn on its worker, checked between chunks of a block group's work (the engine's `check`):
    a cancelled job's group is dropped at once. When the turn is over and other loops wait, a group that has
    run for less than a turn is handed back (at most a turn's work is redone, by a loop that starts it at the
    beginning of its own turn), and one that has run longer is finished first: so no group is cut off for
    ever, however long it is, and a loop overstays its turn by at most what its last group needs."""

    #: At most this often, the check reads the cancel flag and the Celery queue (one round trip).
    INTERVAL_S = 0.1

    def __init__(self, client: redis.Redis, settings: Settings, start: LoopStart) -> None:
        self.client, self.settings = client, settings
        self.record = JobKeys.of(settings, start.job_id).record
        self.length = turn_length(client, settings, start.owner)
        self.ends_at = time.monotonic() + self.length
        self.group_started = time.monotonic()  # set by the loop as it starts each group
        self._next_look = 0.0

    def check(self) -> None:
        now = time.monotonic()
        if now < self._next_look:
            return
        self._next_look = now + self.INTERVAL_S
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(self.record, "cancel_requested")
            pipe.llen(self.settings.blocks_queue)
            cancel, waiting = pipe.execute()
        if cancel == b"1":
            raise GroupCancelled()
        if waiting and now >= self.ends_at and now - self.group_started < self.length:
            raise GroupHandedBack()


def _leave(data: StepData, settings: Settings, start: LoopStart, worker: str, turn: Turn) -> int:
    """Leave the loops hash and pop the list atomically, serving what was popped, until nothing is left."""
    served = 0
    while True:
        with data.client.pipeline(transaction=True) as pipe:
            pipe.hdel(start.keys.loops, start.loop_id)
            pipe.lpop(start.keys.requests)
            _, raw = pipe.execute()
        if raw is None or raw == STOP:
            return served
        served += _serve_one(data, settings, start, raw, worker, turn)


def _serve_one(data: StepData, settings: Settings, start: LoopStart, raw: bytes, worker: str, turn: Turn) -> int:
    """Compute one request; 1 if done, 0 if dropped. Raises GroupHandedBack after handing it back (the turn
    is over, or Redis failed under it): the loop then ends."""
    try:
        request = BlockRequest.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        log.error("job %s: dropping a malformed block request (%s)", start.job_id, exc)
        return 0
    turn.group_started = time.monotonic()
    try:
        compute_group(data, settings, request, worker, check=turn.check)
    except GroupCancelled:
        log.info("job %s: cancelled; dropping block group %d of step %d", start.job_id, request.group, request.step)
        return 0
    except (GroupHandedBack, redis.RedisError) as exc:
        log.info("job %s: handing block group %d of step %d back (%r)", start.job_id, request.group, request.step,
                 exc)
        hand_back(data, start, request, raw)
        raise GroupHandedBack() from exc
    return 1


def hand_back(data: StepData, start: LoopStart, request: BlockRequest, raw: bytes) -> None:
    """Put a request back at the head of the run's list, unclaimed, and leave the run's loops, so that the
    coordinator starts a loop that serves it (best effort: with Redis away, the coordinator re-sends it once
    Redis is back)."""
    try:
        with data.client.pipeline(transaction=True) as pipe:
            pipe.hdel(request.keys.claims, str(request.group))
            pipe.lpush(start.keys.requests, raw)
            pipe.hdel(start.keys.loops, start.loop_id)
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("job %s: could not hand block group %d back (%s)", start.job_id, request.group, exc)


def turn_length(client: redis.Redis, settings: Settings, owner: str) -> float:
    """How long a loop may keep its worker while other loops wait: `block_loop_slice_s` shared among the
    owner's running jobs, so that each API key, not each job, gets an equal share of the block workers."""
    running = client.zcard(keys.owner_index(settings, owner, "running")) if owner else 1
    return settings.block_loop_slice_s / max(1, running)


def _others_waiting(client: redis.Redis, settings: Settings) -> bool:
    """Whether block tasks wait in the Celery queue (kombu's Redis transport keeps it as a list of that name)."""
    return bool(client.llen(settings.blocks_queue))
