"""What a client can send and what it gets back: ids that cannot reach other keys, errors without internals,
per-tenant metrics, offline docs, a strict CSP, and jobs that end clearly when they cannot succeed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from worker.cluster.launcher import LocalCluster

pytestmark = pytest.mark.slow

#: Ids that name another key of the same job, or nothing the store could have made: all must be a plain 404.
ODD_IDS = [":checkpoint", ":loss", ":weights", ":history", ":epochs", ":lease", "/../jobs", "%3Acheckpoint"]


@pytest.fixture
def finished(submit, wait_for) -> dict[str, Any]:
    return wait_for(submit(training={"iters": 3})["id"])


def test_odd_and_foreign_job_ids_are_404_on_every_route(api, finished) -> None:
    job_id = finished["id"]
    ids = [job_id + suffix for suffix in ODD_IDS] + [job_id.upper(), job_id[:-1], job_id + "0", "x" * 32,
                                                      "0" * 32]
    for odd in ids:
        for method, path in [("GET", "/v1/jobs/{}"), ("GET", "/v1/jobs/{}/history"), ("GET", "/v1/jobs/{}/weights"),
                             ("GET", "/v1/jobs/{}/events"), ("POST", "/v1/jobs/{}/cancel"), ("DELETE", "/v1/jobs/{}"),
                             ("GET", "/v1/jobs/{}/plots/loss.png")]:
            response = api.request(method, path.format(odd))
            assert response.status_code == 404, (method, odd, response.status_code, response.text)
            assert response.json()["detail"] in ("Job not found", "Not Found"), (method, odd)
    assert api.get(f"/v1/jobs/{job_id}").status_code == 200  # the real one is untouched


def test_redis_trouble_answers_without_internals_and_with_a_request_id(app_client) -> None:
    client = app_client(redis_url="redis://default:hunter2secret@127.0.0.1:1/0")  # nothing listens on port 1
    response = client.get("/v1/jobs", headers={"X-Request-ID": "trace-me-42"})
    assert response.status_code == 503
    body = response.json()
    assert body["request_id"] == "trace-me-42" and response.headers.get("x-request-id") in (None, "trace-me-42")
    assert "unavailable" in body["detail"] and "trace-me-42" in body["detail"]
    for leak in ("127.0.0.1", "hunter2", "Connection", "Error", "redis://", "port"):
        assert leak not in body["detail"], leak
    fresh = client.get("/v1/jobs", headers={"X-Request-ID": "bad id with spaces"}).json()["request_id"]
    assert re.fullmatch(r"[0-9a-f]{16}", fresh)  # an unusable client id is replaced, never echoed


def test_every_response_carries_a_request_id(api) -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", api.get("/healthz").headers["x-request-id"])
    assert api.get("/v1/jobs", headers={"X-Request-ID": "abc-1"}).headers["x-request-id"] == "abc-1"
    assert len(api.get("/healthz").headers.get_list("x-request-id")) == 1  # one id, one header


def test_metrics_count_the_callers_jobs_only_unless_admin(app_client, keys) -> None:
    client = app_client(admin_keys=SecretStr("admin-key-77"), max_running_jobs_per_key=1)
    body = {"dataset": "mnist", "training": {"iters": 5}}
    for _ in range(3):
        assert client.post("/v1/jobs", json=body).status_code == 201
    assert client.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {keys['other']}"}).status_code == 201

    def queued(key: str) -> float:
        text = client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).text
        return float(re.search(r'^zdl_jobs\{status="queued"\} (\S+)$', text, re.MULTILINE).group(1))

    assert queued(keys["mine"]) == 3 and queued(keys["other"]) == 1 and queued("admin-key-77") == 4
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer admin-key-77"}).json()["total"] == 0  # its own


def test_docs_work_offline_and_run_only_our_scripts(cluster) -> None:
    page = httpx.get(f"{cluster.url}/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/") for s in sources), sources  # nothing from a CDN
    for source in sources:
        asset = httpx.get(f"{cluster.url}{source}")
        assert asset.status_code == 200 and len(asset.content) > 100, source
    assert "SwaggerUIBundle" in httpx.get(f"{cluster.url}/docs-assets/swagger-ui-bundle.js").text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self' 'sha256-" in policy and "http" not in policy
    assert httpx.get(f"{cluster.url}/redoc").status_code == 200


def test_the_dashboard_allows_only_its_own_origin(cluster) -> None:
    policy = httpx.get(f"{cluster.url}/").headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'" and directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and "unsafe" not in policy


@pytest.mark.parametrize("field, value, words", [
    ("weight_init_std", 1e308, "over the limit of 10"),
    ("weight_init_std", 11.0, "saturate every unit"),
])
def test_absurd_initial_scales_are_refused(api, field: str, value: float, words: str) -> None:
    response = api.post("/v1/jobs", json={"dataset": "mnist", "model": {field: value}})
    assert response.status_code == 422 and words in response.json()["detail"], response.text
    assert response.json()["errors"][0]["field"] == f"model.{field}"


def test_a_diverging_job_is_stopped_and_marked(api, submit, wait_for) -> None:
    # One sample a step and the largest finite rate: the first misclassified sample's update puts entries of
    # W2 near +-1e308, and the next logits overflow (inf - inf in the softmax). With a batch of 20 and 1e300
    # whether it happened within 200 steps hung on the gradient's last bits.
    job = wait_for(submit(model={"weight_init_std": 10.0},
                          training={"iters": 200, "learning_rate": 1e308, "batch_size": 1})["id"])
    assert job["status"] == "failed" and job["diverged"] is True, job
    assert "diverged" in job["error"] and "learning rate" in job["error"]
    losses = api.get(job["links"]["history"]).json()["loss"]
    assert losses and losses[-1] is None and len(losses) < 200  # stopped at the first non-finite loss


@pytest.fixture(scope="module")
def strict_cluster(service_root, service_env, fast_settings) -> Iterator[LocalCluster]:
    """A cluster of its own whose jobs may run 3 s at most."""
    settings = fast_settings.model_copy(update={"max_job_seconds": 3.0})
    with LocalCluster(service_root / "strict", block_workers=1, port=0, settings=settings, persist=False,
                      env=service_env) as running:
        yield running


def test_a_job_over_its_time_limit_ends_failed(strict_cluster, keys, small_job) -> None:
    small_job["training"]["iters"] = 100_000
    with httpx.Client(base_url=strict_cluster.url, timeout=30, headers={"Authorization": f"Bearer {keys['mine']}"}) \
            as api:
        job = api.post("/v1/jobs", json=small_job).json()
        began = time.monotonic()
        while (done := api.get(f"/v1/jobs/{job['id']}").json())["status"] in ("queued", "running"):
            assert time.monotonic() - began < 30, done
            time.sleep(0.1)
    assert done["status"] == "failed" and "limit of 3 s (ZDL_MAX_JOB_SECONDS)" in done["error"], done
    assert 0 < done["progress"]["iteration"] < 100_000


@pytest.fixture(scope="module")
def one_worker_cluster(service_root, service_env, fast_settings) -> Iterator[LocalCluster]:
    """One block worker shared by two keys, 0.3 s turns, and steps allowed to stay one long block group."""
    settings = fast_settings.model_copy(update={"block_loop_slice_s": 0.3, "block_group_target_s": 30.0})
    with LocalCluster(service_root / "turns", block_workers=1, port=0, settings=settings, persist=False,
                      env=service_env) as running:
        yield running


def test_a_group_longer_than_a_turn_still_finishes_while_another_key_waits(one_worker_cluster, keys) -> None:
    """Key A's job is one block group of more than a turn per step; key B's small job always waits for the
    worker. Both make progress: B gets its turns, and A's long group is never cut off for ever."""
    heavy = {"dataset": "mnist", "model": {"hidden_size": 1024}, "training": {"iters": 1000, "batch_size": 5000},
             "gradient": {"method": "numerical", "blocks": 1}}
    light = {"dataset": "mnist", "model": {"hidden_size": 8}, "training": {"iters": 100_000, "batch_size": 20},
             "gradient": {"method": "numerical", "blocks": 1}}
    url = one_worker_cluster.url
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {keys['mine']}"}) as a, \
            httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {keys['other']}"}) as b:
        heavy_job = a.post("/v1/jobs", json=heavy).json()
        # a step is well over a turn of one core
        assert heavy_job["estimate"]["core_seconds"] / 1000 > 2 * one_worker_cluster.settings.block_loop_slice_s
        light_job = b.post("/v1/jobs", json=light).json()
        try:
            began = time.monotonic()
            while (done := a.get(f"/v1/jobs/{heavy_job['id']}").json())["progress"]["iteration"] < 2:
                assert time.monotonic() - began < 60, done
                time.sleep(0.2)
            light_now = b.get(f"/v1/jobs/{light_job['id']}").json()["progress"]["iteration"]
            assert light_now > 10  # B had turns meanwhile
        finally:
            for client, job in ((a, heavy_job), (b, light_job)):
                client.post(f"/v1/jobs/{job['id']}/cancel")
