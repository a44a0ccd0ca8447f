"""What a coordinator tells a job's owner when it takes the job: started or resumed, where, how, and why.

The entries go to the job's event log (worker/state/job_log.py); the numerics never read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from worker.scheduling.heartbeat import alive_workers
from worker.settings import Settings
from worker.state import job_log
from worker.state.checkpoints import checkpoint_step


def resume_reason(record: Mapping[str, Any], redis_epochs: str) -> str:
    """Why a job found `running` is being resumed, from what its last run left in the record."""
    if record.get("run_state") == "interrupted":
        return "its coordinator was stopped (SIGTERM: a restart or an upgrade) and saved a checkpoint"
    if record.get("redis_epochs") not in (None, redis_epochs):
        return "a Redis server restarted (or the service was restored from a backup) while it ran"
    return "its coordinator died (killed, or out of memory) and a coordinator worker found its lease lapsed"


def log_start(client: redis.Redis, settings: Settings, job_id: str, *, record: Mapping[str, Any], worker: str,
              blocks: int, hidden_size: int, gradient: str, redis_epochs: str) -> None:
    """A `started` or `resumed` entry: the coordinator, gang or fan-out, the groups and the block workers."""
    block_workers = sorted(alive_workers(client, settings, settings.blocks_queue))
    if gradient == "backprop":
        mode = "backprop on the coordinator"
    elif 0 < blocks <= min(len(block_workers), hidden_size):
        mode = "gang"
    else:
        mode = "fan-out"
    fields: dict[str, Any] = {"worker": worker, "mode": mode, "groups": blocks, "block_workers": block_workers}
    if record.get("status") == "running":
        fields.update(from_iteration=checkpoint_step(client, settings, job_id), why=resume_reason(record, redis_epochs))
        job_log.append(client, settings, job_id, "resumed", **fields)
    else:
        job_log.append(client, settings, job_id, "started", **fields)
