"""Surviving a dead coordinator: a lease on each running job, checkpoints, and a sweep that re-enqueues orphans.

The process coordinating a job holds its lease: a Redis key with the process's run token and a short
expiry, refreshed by a thread. Every `checkpoint_every` iterations the coordinator saves step,
parameters, history and random-generator state (`zdl.train.Trainer.state()`). Coordinator workers
sweep the running jobs every heartbeat; one whose lease has expired has lost its coordinator and is
sent to the coordinator queue again, where a worker takes the lease and resumes from the checkpoint
(`Trainer.restore()`). Iterations after the checkpoint are recomputed from the checkpoint's state, and
their losses dropped first, so none is applied twice; the result is bit-identical to an undisturbed run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import redis

from worker.settings import Settings
from worker.state import job_log, keys
from worker.state.keys import JobKeys
from worker.state.replies import Fields, hash_reply, texts
from zdl.history import History
from zdl.nets import PARAM_NAMES
from zdl.train import TrainerState

log = logging.getLogger(__name__)

# Refresh or release the lease only while it is still ours (compare and act in one step, inside Redis).
_REFRESH = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class LeaseLost(Exception):
    """Another process now coordinates the job (this one was too slow to refresh its lease)."""


class Lease:
    """The right to coordinate one job; `lost` is set if the refresher finds the lease taken or gone."""

    def __init__(self, client: redis.Redis, settings: Settings, job_id: str) -> None:
        self.client, self.settings = client, settings
        self.key = JobKeys.of(settings, job_id).lease
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ttl_ms = int(1000 * settings.heartbeat_ttl_s)
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lease if nobody holds it, and start refreshing it."""
        if not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return False
        self._thread = threading.Thread(target=self._refresh, name="zdl-lease", daemon=True)
        self._thread.start()
        return True

    def _refresh(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                if not self.client.eval(_REFRESH, 1, self.key, self.token, self.ttl_ms):
                    log.warning("lease %s lost", self.key)
                    self.lost.set()
                    return
            except redis.RedisError as exc:  # Redis away: the lease will lapse; the coordinator notices too
                log.warning("could not refresh lease %s: %s", self.key, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            self.client.eval(_RELEASE, 1, self.key, self.token)
        except redis.RedisError as exc:  # it expires by itself
            log.warning("could not release lease %s: %s", self.key, exc)


def queue_checkpoint(pipe: redis.client.Pipeline, settings: Settings, job_id: str, state: TrainerState) -> None:
    """Queue the writing of `state` on `pipe` (one HSET: a reader sees the old checkpoint or the new one)."""
    mapping: Fields = {
        "step": str(state.step), "rng": json.dumps(state.rng_state), "history": state.history.to_json(),
    }
    for name in PARAM_NAMES:
        array = np.ascontiguousarray(state.params[name], dtype=np.float64)
        mapping[name], mapping[f"{name}.shape"] = array.tobytes(), json.dumps(list(array.shape))
    pipe.hset(JobKeys.of(settings, job_id).checkpoint, mapping=mapping)
    job_log.append(pipe, settings, job_id, "checkpoint", iteration=state.step)


def load_checkpoint(client: redis.Redis, settings: Settings, job_id: str) -> TrainerState | None:
    raw = hash_reply(client.hgetall(JobKeys.of(settings, job_id).checkpoint))
    if not raw:
        return None
    params = {name: np.frombuffer(raw[name.encode()], dtype=np.float64).reshape(json.loads(raw[f"{name}.shape"
                                                                                                  .encode()]))
              for name in PARAM_NAMES}
    return TrainerState(int(raw[b"step"]), params, json.loads(raw[b"rng"]),
                        History.from_json(raw[b"history"].decode()))


def rewind_progress(client: redis.Redis, settings: Settings, job_id: str, step: int) -> None:
    """Drop the losses and evaluations recorded after `step` (they will be recorded again)."""
    k = JobKeys.of(settings, job_id)

    def rewind(pipe: redis.client.Pipeline) -> None:
        epochs = [e for e in pipe.lrange(k.epochs, 0, -1) if json.loads(e)["iteration"] < step]
        pipe.multi()
        if step > 0:
            pipe.ltrim(k.loss, 0, step - 1)
        else:
            pipe.delete(k.loss)
        pipe.delete(k.epochs)
        if epochs:
            pipe.rpush(k.epochs, *epochs)
        pipe.hset(k.record, "iteration", step)

    client.transaction(rewind, k.epochs)


def recover_orphans(client: redis.Redis, settings: Settings, enqueue: Callable[[str], Any]) -> list[str]:
    """Re-enqueue every running job whose coordinator's lease has lapsed; returns their ids.

    Every coordinator worker calls this each heartbeat; the `resume` marker makes one of them do it.
    """
    running = texts(client.zrange(keys.jobs_index(settings, "running"), 0, -1))
    if not running:
        return []
    with client.pipeline(transaction=False) as pipe:
        for job_id in running:
            pipe.exists(JobKeys.of(settings, job_id).lease)
        held = pipe.execute()
    orphans = []
    for job_id, has_lease in zip(running, held, strict=True):
        marker = JobKeys.of(settings, job_id).resume
        if not has_lease and client.set(marker, "1", nx=True, px=int(2000 * settings.heartbeat_ttl_s)):
            log.warning("job %s: its coordinator is gone; re-enqueueing it to resume from its checkpoint", job_id)
            enqueue(job_id)
            orphans.append(job_id)
    return orphans
