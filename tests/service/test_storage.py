"""Bounded storage: per-key quotas, finished jobs that expire, results stored once, and a full Redis that
refuses cleanly (507) without losing or half-writing anything."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from worker.cluster import processes
from worker.state import keys
from worker.state.job_store import JobStore, result_bytes
from worker.state.keys import JobKeys
from zdl.spec import JobSpec

pytestmark = pytest.mark.slow

BODY = {"dataset": "mnist", "model": {"hidden_size": 4}, "training": {"iters": 5}}


def owner_keys(client: redis.Redis, prefix: str) -> list[bytes]:
    return sorted(k for k in client.scan_iter(f"{prefix}:*", count=1000))


def test_stored_jobs_quota_is_429_and_deleting_frees_room(app_client) -> None:
    client = app_client(max_stored_jobs_per_key=2, max_active_jobs_per_key=10)
    made = [client.post("/v1/jobs", json=BODY) for _ in range(2)]
    assert [r.status_code for r in made] == [201, 201]
    refused = client.post("/v1/jobs", json=BODY)
    assert refused.status_code == 429
    detail = refused.json()["detail"]
    assert "stores 2 jobs, its quota (ZDL_MAX_STORED_JOBS_PER_KEY=2)" in detail and "DELETE /v1/jobs/{id}" in detail
    job_id = made[0].json()["id"]
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    assert client.post("/v1/jobs", json=BODY).status_code == 429  # cancelled is still stored
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert client.post("/v1/jobs", json=BODY).status_code == 201


def test_stored_bytes_quota_counts_what_results_will_take(app_client) -> None:
    big = {"dataset": "mnist", "model": {"hidden_size": 512}, "training": {"iters": 100}}
    need = result_bytes(JobSpec.model_validate(big))
    client = app_client(max_stored_mb_per_key=2.5 * need / 2**20)
    assert [client.post("/v1/jobs", json=big).status_code for _ in range(3)] == [201, 201, 429]
    detail = client.post("/v1/jobs", json=big).json()["detail"]
    assert "ZDL_MAX_STORED_MB_PER_KEY" in detail and "MiB" in detail
    assert client.post("/v1/jobs", json=BODY).status_code == 201  # a small one still fits


def test_finished_jobs_expire_with_everything_they_stored(cluster) -> None:
    settings = cluster.settings.model_copy(update={"key_prefix": f"zdl-expiry-{time.time_ns()}",
                                                   "job_ttl_days": 1e-5})  # under a second
    client = redis.Redis.from_url(settings.redis_url)
    store = JobStore(client, settings)
    job_id, _ = store.create(BODY, "owner-x", "idem-1", reserved_bytes=1234)
    assert store.transition(job_id, "running", ["queued"])
    store.finish(job_id, "succeeded", weights=b"w" * 10, history={"loss": [1.0]})
    assert store.delete_expired() == []  # not yet due
    time.sleep(1.0)
    assert store.delete_expired() == [job_id]
    assert [k for k in owner_keys(client, settings.key_prefix) if job_id.encode() in k] == []
    assert client.zrange(keys.jobs_index(settings), 0, -1) == [] and client.zcard(keys.expiring(settings)) == 0
    assert client.get(keys.owner_bytes(settings, "owner-x")) == b"0"
    assert not client.exists(keys.idempotency(settings, "owner-x", "idem-1"))
    kept = settings.model_copy(update={"job_ttl_days": 0.0})
    other, _ = JobStore(client, kept).create(BODY, "owner-x")
    JobStore(client, kept).fail(other, "x")
    assert client.zcard(keys.expiring(settings)) == 0  # 0 days: kept until deleted


def test_a_finished_job_keeps_its_history_once_and_no_checkpoint(api, submit, wait_for, cluster) -> None:
    job = wait_for(submit(training={"iters": 30})["id"])
    assert job["status"] == "succeeded"
    client = redis.Redis.from_url(cluster.settings.redis_url)
    k = JobKeys.of(cluster.settings, job["id"])
    assert client.exists(k.history) and client.exists(k.weights)
    assert not client.exists(k.loss) and not client.exists(k.epochs) and not client.exists(k.checkpoint)
    history = api.get(job["links"]["history"]).json()
    assert len(history["loss"]) == 30 and history["epoch_iters"]


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis of 2 MB that refuses writes beyond it (noeviction), as the cluster's are configured."""
    port = processes.free_port()
    server = processes.start_redis(port, tmp_path / "data", tmp_path / "logs", persist=False, maxmemory_mb=2)
    url = f"redis://127.0.0.1:{port}/0"
    processes.wait_until(lambda: processes.redis_ready(url), 20, "redis", [server])
    yield url
    processes.stop([server])


@pytest.mark.redis
def test_a_full_redis_is_507_and_nothing_is_half_written(cluster, small_redis: str) -> None:
    client = redis.Redis.from_url(small_redis)
    settings = cluster.settings.model_copy(update={"redis_url": small_redis, "step_redis_url": "",
                                                   "coordinator_queue": "zdl.nobody"})
    with TestClient(create_app(settings), headers={"Authorization": "Bearer test-key-7f3a"},
                    raise_server_exceptions=False) as api:
        assert api.post("/v1/jobs", json=BODY).status_code == 201
        filler = 0
        while True:  # fill it up to its limit
            try:
                client.set(f"filler:{filler}", b"x" * 65536)
            except redis.exceptions.OutOfMemoryError:
                break
            filler += 1
        # and full it stays: the failed SET's 64 KiB query buffer, freed a moment later, must not make room
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 2**17)
        before = {k: client.type(k) for k in client.scan_iter("zdl:*")}
        response = api.post("/v1/jobs", json=BODY)
        assert response.status_code == 507, response.text
        assert "full" in response.json()["detail"] and response.json()["request_id"]
        assert {k: client.type(k) for k in client.scan_iter("zdl:*")} == before  # no record, no index entry
        listed = api.get("/v1/jobs")
        assert listed.status_code == 200 and listed.json()["total"] == 1  # reads still work


@pytest.mark.redis
def test_past_the_high_water_mark_jobs_and_sweeps_are_507_saying_how_much_room(app_client) -> None:
    client = app_client(redis_high_water=1e-6)  # the session's store is already past a mark this low
    sweep = {"base": BODY, "grid": {"seed": [1, 2]}}
    for path, body in (("/v1/jobs", BODY), ("/v1/sweeps", sweep)):
        response = client.post(path, json=body)
        assert response.status_code == 507, response.text
        detail = response.json()["detail"]
        assert "MiB used of the" in detail and "ZDL_REDIS_HIGH_WATER" in detail and "DELETE /v1/jobs/{id}" in detail
    assert client.get("/v1/jobs").json()["total"] == 0 and client.get("/v1/sweeps").status_code == 200
