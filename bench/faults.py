"""Faults done for real to a LocalCluster's processes, for the fault tests and bench/chaos.py.

Each function does one fault and returns when it is done; `LocalCluster.replace_dead()` brings the
cluster back to strength afterwards.
"""

from __future__ import annotations

import os
import signal
import time

import redis

from worker.cluster import processes
from worker.cluster.launcher import LocalCluster
from worker.cluster.processes import Managed
from worker.state.keys import JobKeys
from worker.state.replies import text


def sigkill_group(proc: Managed) -> None:
    """SIGKILL the process and everything in its group (a Celery worker and its pool), and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.popen.wait()


def kill_block_worker(cluster: LocalCluster) -> str:
    """SIGKILL the first block worker (it may be computing a block right now); returns its name."""
    victim = cluster.blocks[0]
    sigkill_group(victim)
    return victim.name


def coordinator_pid(cluster: LocalCluster, job_id: str) -> int:
    """The pid of the process coordinating the job, from its lease token (host:pid:nonce)."""
    client = redis.Redis.from_url(cluster.settings.redis_url)
    token = client.get(JobKeys.of(cluster.settings, job_id).lease)
    if token is None:
        raise LookupError(f"job {job_id} has no coordinator right now")
    return int(text(token).split(":")[1])


def kill_coordinator(cluster: LocalCluster, job_id: str, whole_worker: bool) -> str:
    """SIGKILL the pool process running the job's coordinator, or its whole Celery worker; returns what died."""
    pid = coordinator_pid(cluster, job_id)
    if not whole_worker:
        os.kill(pid, signal.SIGKILL)
        return f"pool process {pid}"
    group = os.getpgid(pid)
    worker = next(p for p in (cluster.coordinator, *cluster.extra_coordinators) if p is not None and p.pid == group)
    sigkill_group(worker)
    return worker.name


def redis_outage(cluster: LocalCluster, seconds: float, step: bool = False) -> float:
    """Stop Redis (SIGTERM: it flushes its append-only file), or the step Redis (which comes back empty), wait
    `seconds`, start it again on the same port and files; returns how long it was unreachable."""
    server = cluster.step_redis if step else cluster.redis
    assert server is not None, "the cluster does not run that Redis itself"
    began = time.monotonic()
    processes.stop([server])
    time.sleep(seconds)
    cluster.start_redis(step=step, timeout_s=30)
    return time.monotonic() - began
