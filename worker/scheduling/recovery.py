"""Surviving a dead coordinator: a lease on each running job, and a sweep that re-enqueues orphans.

The process coordinating a job holds its lease: a `redis.lock.Lock` on the job's lease key whose token
names the process (host:pid:nonce), with a short expiry that a thread refreshes. Coordinator workers sweep
the running jobs every heartbeat; one whose lease has expired has lost its coordinator and is sent to the
coordinator queue again, where a worker takes the lease and resumes from the job's last checkpoint
(`worker.state.checkpoints.resume`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import LockError, LockNotOwnedError

from worker.settings import Settings
from worker.state import keys
from worker.state.headroom import ending_commands
from worker.state.keys import JobKeys
from worker.state.replies import texts

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another process now coordinates the job (this one was too slow to refresh its lease)."""


class Lease:
    """The right to coordinate one job; `lost` is set if the refresher finds the lease taken or gone."""

    def __init__(self, client: redis.Redis, settings: Settings, job_id: str) -> None:
        self.client, self.settings = client, settings
        self.key, self.resume = JobKeys.of(settings, job_id).lease, JobKeys.of(settings, job_id).resume
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lock = client.lock(self.key, timeout=settings.heartbeat_ttl_s, blocking=False, thread_local=False)
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lease if nobody holds it, and start refreshing it; taking it clears the job's resume
        marker (so a job re-enqueued for resumption is re-enqueued again only if nobody ever took it)."""
        try:
            taken = self.lock.acquire(token=self.token)
        except redis.exceptions.OutOfMemoryError:  # a full store: as a script (worker/state/headroom.py)
            ttl_ms = int(1000 * self.settings.heartbeat_ttl_s)
            replies = ending_commands(self.client, self.settings, [("SET", self.key, self.token, "NX", "PX", ttl_ms)])
            taken = bool(replies and replies[0])
            if taken:
                self.lock.local.token = self.token.encode()  # as Lock.acquire records it: extend/release work
        if not taken:
            return False
        self.client.delete(self.resume)
        self._thread = threading.Thread(target=self._refresh, name="zdl-lease", daemon=True)
        self._thread.start()
        return True

    def _refresh(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                self.lock.reacquire()  # back to the full expiry, only while the token is still ours
            except LockNotOwnedError:
                log.warning("lease %s lost", self.key)
                self.lost.set()
                return
            except redis.RedisError as exc:  # Redis away: the lease will lapse; the coordinator notices too
                log.warning("could not refresh lease %s: %s", self.key, exc)

    def release(self) -> None:
        """Stop refreshing and give the lease up if it is still ours (never held, or taken: nothing to do)."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout=2)
        try:
            self.lock.release()
        except LockError:  # taken by another process, or expired meanwhile
            pass
        except redis.RedisError as exc:  # it expires by itself
            log.warning("could not release lease %s: %s", self.key, exc)


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
        # The marker lasts until a coordinator takes the lease (Lease.acquire), at most the stall timeout:
        # a message lost with its broker is sent again then, a message waiting in a busy queue is not.
        if not has_lease and client.set(marker, "1", nx=True, px=int(1000 * settings.stall_timeout_s)):
            log.warning("job %s: its coordinator is gone; re-enqueueing it to resume from its checkpoint", job_id)
            enqueue(job_id)
            orphans.append(job_id)
    return orphans
