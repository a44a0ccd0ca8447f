"""Each job's event log, for its owner: what happened to it and why, in a few lines (`GET /v1/jobs/{id}/log`).

    queued          the API stored it
    started         a coordinator took it: which one, gang or fan-out, how many groups, which block workers
    checkpoint      saved at an iteration (consecutive ones are one entry: first, last, count)
    replica_lost    a gang's turn lost replicas (their worker process died or never took them): which, why, and
                    the checkpoint iteration the run went on from
    resumed         taken over from a checkpoint: by which coordinator, from which iteration, and why
    cancel_asked    its owner (or an admin) asked to cancel it while it ran
    finished        succeeded, failed (with the reason the record holds) or cancelled

A Redis list `<p>:job:<id>:log` of JSON objects, stored and deleted with the job. Bounded: at most
MAX_EVENTS entries (the oldest dropped first) of at most MAX_FIELD_CHARS per field, and checkpoints folded
into one entry, so a job of 100,000 iterations keeps a short log.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from worker.settings import Settings
from worker.state.keys import JobKeys

MAX_EVENTS = 100
MAX_FIELD_CHARS = 500

#: Append an event; a checkpoint right after a checkpoint updates that entry instead (ARGV: the event as JSON,
#: 1 if it is a checkpoint, its iteration, its time, MAX_EVENTS).
_APPEND = """
if ARGV[2] == '1' then
  local last = redis.call('lindex', KEYS[1], -1)
  if last then
    local entry = cjson.decode(last)
    if entry.event == 'checkpoint' then
      entry.last_iteration = tonumber(ARGV[3])
      entry.count = (entry.count or 1) + 1
      entry.last_time = tonumber(ARGV[4])
      redis.call('lset', KEYS[1], -1, cjson.encode(entry))
      return 0
    end
  end
end
redis.call('rpush', KEYS[1], ARGV[1])
redis.call('ltrim', KEYS[1], -tonumber(ARGV[5]), -1)
return 1
"""


def append(client: redis.Redis | redis.client.Pipeline, settings: Settings, job_id: str, event: str,
           **fields: Any) -> None:
    """Add an event to the job's log (on a pipeline: queued with its other writes)."""
    now = round(time.time(), 3)
    entry = {"time": now, "event": event, **{k: _bounded(v) for k, v in fields.items() if v is not None}}
    key = JobKeys.of(settings, job_id).log
    if event != "checkpoint":  # plain commands: an ending write may be replayed as a script on a full store
        client.rpush(key, json.dumps(entry))
        client.ltrim(key, -MAX_EVENTS, -1)
        return
    entry.update(count=1, last_iteration=fields["iteration"], last_time=now)
    client.eval(_APPEND, 1, key, json.dumps(entry), "1", str(fields.get("iteration", 0)), str(now), str(MAX_EVENTS))


def read(client: redis.Redis, settings: Settings, job_id: str) -> list[dict[str, Any]]:
    """The job's events, oldest first."""
    return [json.loads(raw) for raw in client.lrange(JobKeys.of(settings, job_id).log, 0, -1)]


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + "..."
    if isinstance(value, list):
        return [_bounded(v) for v in value[:32]]
    return value

