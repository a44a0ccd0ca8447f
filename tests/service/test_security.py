"""API keys, job ownership and limits, checked over HTTP against the running service (and in-process for
settings the session cluster does not use)."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from pydantic import SecretStr

from api.auth import owner_id
from worker.cluster.launcher import redacted
from worker.settings import Settings

V1_ROUTES = [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/{id}"), ("GET", "/v1/jobs/{id}/history"),
             ("GET", "/v1/jobs/{id}/weights"), ("GET", "/v1/jobs/{id}/events"), ("POST", "/v1/jobs/{id}/cancel"),
             ("DELETE", "/v1/jobs/{id}"), ("GET", "/v1/jobs/{id}/plots/loss.png"),
             ("GET", "/v1/jobs/{id}/plots/accuracy.png"), ("GET", "/v1/jobs/{id}/plots/weights.png")]


@pytest.fixture
def finished_job(submit, wait_for) -> dict:
    return wait_for(submit(training={"iters": 2})["id"])


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "Basic dGVzdDp0ZXN0", "Bearer", "test-key-7f3a"])
def test_every_v1_route_needs_a_valid_key(cluster, finished_job, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    with httpx.Client(base_url=cluster.url, timeout=10, headers=headers) as anonymous:
        for method, path in V1_ROUTES:
            response = anonymous.request(method, path.format(id=finished_job["id"]), json={"dataset": "mnist"})
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            detail = response.json()["detail"]
            assert detail in ("invalid API key", "missing API key: send the header `Authorization: Bearer <key>`")


def test_probes_docs_and_page_are_open_metrics_need_a_key(cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=10) as anonymous:
        for path in ("/healthz", "/readyz", "/docs", "/openapi.json", "/"):
            assert anonymous.get(path).status_code == 200, path
        assert anonymous.get("/metrics").status_code == 401
    schemes = httpx.get(f"{cluster.url}/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"


def test_another_key_never_sees_a_job(api, stranger, finished_job) -> None:
    job_id = finished_job["id"]
    for method, path in V1_ROUTES[2:]:
        response = stranger.request(method, path.format(id=job_id))
        assert response.status_code == 404 and response.json() == {"detail": "Job not found"}, (method, path)
    assert job_id not in [j["id"] for j in stranger.get("/v1/jobs", params={"limit": 100}).json()["items"]]
    assert job_id in [j["id"] for j in api.get("/v1/jobs", params={"limit": 100}).json()["items"]]
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"  # untouched by the stranger's cancel


def test_idempotency_keys_are_per_api_key(api, stranger) -> None:
    body = {"dataset": "mnist", "model": {"hidden_size": 2}, "training": {"iters": 1, "batch_size": 2}}
    mine = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "shared-name"}).json()
    theirs = stranger.post("/v1/jobs", json=body, headers={"Idempotency-Key": "shared-name"}).json()
    assert mine["id"] != theirs["id"]


def test_keys_are_stored_hashed_never_in_clear(cluster, finished_job) -> None:
    import redis

    client = redis.Redis.from_url(cluster.settings.redis_url)
    record = client.hgetall(f"{cluster.settings.key_prefix}:job:{finished_job['id']}")
    assert record[b"owner"].decode() == owner_id("test-key-7f3a", cluster.settings)
    assert len(record[b"owner"]) == 64
    assert record[b"owner"].decode() != hashlib.sha256(b"test-key-7f3a").hexdigest()  # keyed: an HMAC, not a bare hash
    dump = b"".join(client.dump(k) or b"" for k in client.scan_iter(count=1000))
    assert b"test-key-7f3a" not in dump
    for process in cluster.processes:
        assert "test-key-7f3a" not in process.log_tail(10**6), process.name


def test_per_key_active_job_limit_is_429(app_client) -> None:
    client = app_client(max_active_jobs_per_key=2)
    body = {"dataset": "mnist", "training": {"iters": 5}}
    assert [client.post("/v1/jobs", json=body).status_code for _ in range(2)] == [201, 201]
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 429
    assert "limit (ZDL_MAX_ACTIVE_JOBS_PER_KEY=2)" in response.json()["detail"]
    other = client.post("/v1/jobs", json=body, headers={"Authorization": "Bearer other-key-91c2"})
    assert other.status_code == 201  # the limit is per key
    job_id = client.get("/v1/jobs").json()["items"][0]["id"]
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    assert client.post("/v1/jobs", json=body).status_code == 201  # a cancelled job frees its place


def test_oversized_bodies_are_413(app_client) -> None:
    client = app_client(max_body_bytes=2048)
    big = {"dataset": "mnist", "padding": "x" * 4000}
    response = client.post("/v1/jobs", json=big)
    assert response.status_code == 413
    assert response.json() == {"detail": "request body is over the limit of 2048 bytes (ZDL_MAX_BODY_BYTES)"}
    chunked = client.post("/v1/jobs", content=iter([b"{" + b" " * 1500, b" " * 1500 + b"}"]),
                          headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413


def test_settings_switch_metrics_and_docs(app_client) -> None:
    closed = app_client(public_docs=False, public_metrics=True)
    assert closed.get("/docs").status_code == 404 and closed.get("/openapi.json").status_code == 404
    assert closed.get("/metrics", headers={"Authorization": ""}).status_code == 200


def test_without_keys_only_loopback(app_client) -> None:
    with pytest.raises(ValueError, match="ZDL_API_KEYS is empty, so the API may only listen on 127.0.0.1"):
        Settings(api_keys="", api_host="0.0.0.0")
    Settings(api_keys="k", api_host="0.0.0.0", secret_key="s" * 16)  # with a key (and the secret), any address
    with pytest.raises(ValueError, match="ZDL_SECRET_KEY must be set"):
        Settings(api_keys="k", secret_key="short")
    keyless = app_client(api_keys=SecretStr(""))
    response = keyless.get("/v1/jobs")  # the test client's address is "testclient", not loopback
    assert response.status_code == 401 and "from this machine only" in response.json()["detail"]


def test_redis_passwords_are_not_printed() -> None:
    assert redacted("rediss://:s3cret@host:6380/0") == "rediss://:***@host:6380/0"
    assert redacted("redis://user:s3cret@host/0") == "redis://user:***@host/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
