"""The jobs API around training: validation, idempotency, listing, errors, cancel, delete."""

from __future__ import annotations

import time
from typing import Any

import pytest

from zdl.datasets import DATASETS
from zdl.engine import METHODS
from zdl.spec import DatasetName, MethodName

BOOK_RUN = {"model": {"hidden_size": 50, "weight_init_std": 0.01}, "dataset": "mnist",
            "training": {"iters": 10000, "batch_size": 100, "learning_rate": 0.1, "seed": 0},
            "gradient": {"method": "numerical", "blocks": "auto"}}


def test_literals_match_zdl() -> None:
    assert set(DatasetName.__args__) == set(DATASETS)
    assert set(MethodName.__args__) == set(METHODS)


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"model": {"hidden_size": 0}}, "model.hidden_size", "greater than or equal to 1"),
    ({"model": {"hidden_size": 5000}}, "model.hidden_size", "over the limit of 1024 (ZDL_MAX_HIDDEN_SIZE)"),
    ({"training": {"iters": 100_001}}, "training.iters", "over the limit of 100000 (ZDL_MAX_ITERS)"),
    ({"training": {"batch_size": 10_001}}, "training.batch_size", "over the limit of 10000 (ZDL_MAX_BATCH_SIZE)"),
    ({"model": {"input_size": 100}}, "model.input_size", "784"),
    ({"model": {"output_size": 3}}, "model.output_size", "10"),
    ({"model": {"hiden_size": 8}}, "model.hiden_size", "not permitted"),
    ({"dataset": "cifar"}, "dataset", "'mnist' or 'fashion-mnist'"),
    ({"dataset": None}, "dataset", "'mnist' or 'fashion-mnist'"),
    ({"training": {"iters": 0}}, "training.iters", "greater than or equal to 1"),
    ({"training": {"learning_rate": -1}}, "training.learning_rate", "greater than 0"),
    ({"gradient": {"method": "sgd"}}, "gradient.method", "'numerical', 'numerical-reference' or 'backprop'"),
    ({"gradient": {"blocks": 0}}, "gradient.blocks", 'positive integer or "auto"'),
])
def test_invalid_bodies_are_422_naming_the_field(api, body: dict[str, Any], field: str, words: str) -> None:
    request = {**BOOK_RUN, **{k: {**BOOK_RUN[k], **v} if isinstance(v, dict) else v for k, v in body.items()}}
    response = api.post("/v1/jobs", json=request)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{field}: ") and words in detail, detail
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_missing_dataset_field_is_422(api) -> None:
    response = api.post("/v1/jobs", json={"model": {"hidden_size": 8}})
    assert response.status_code == 422 and response.json()["detail"] == "dataset: Field required"


def test_book_defaults(api, wait_for) -> None:
    response = api.post("/v1/jobs", json={"dataset": "mnist", "training": {"iters": 1, "batch_size": 1}})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["spec"]["model"] == {**BOOK_RUN["model"], "input_size": None, "output_size": None}
    assert job["spec"]["gradient"] == BOOK_RUN["gradient"] and job["spec"]["training"]["learning_rate"] == 0.1
    assert job["status"] == "queued" and response.headers["location"] == job["links"]["self"]
    assert wait_for(job["id"])["status"] == "succeeded"


def test_idempotency_key_returns_the_same_job(api, wait_for) -> None:
    body = {"dataset": "mnist", "model": {"hidden_size": 4}, "training": {"iters": 2, "batch_size": 5}}
    first = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "retry-me-1"})
    second = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "retry-me-1"})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] and second.headers["idempotent-replayed"] == "true"
    other = api.post("/v1/jobs", json={**body, "training": {"iters": 3}}, headers={"Idempotency-Key": "retry-me-1"})
    assert other.status_code == 409 and "different request body" in other.json()["detail"]
    assert wait_for(first.json()["id"])["status"] == "succeeded"


def test_unknown_job_is_404(api) -> None:
    for method, path in [("GET", "/v1/jobs/nope"), ("GET", "/v1/jobs/nope/history"),
                         ("GET", "/v1/jobs/nope/weights"), ("GET", "/v1/jobs/nope/events"),
                         ("POST", "/v1/jobs/nope/cancel"), ("DELETE", "/v1/jobs/nope")]:
        response = api.request(method, path)
        assert response.status_code == 404 and response.json() == {"detail": "Job not found"}, (method, path)


def test_list_pages_and_filters(api, submit, wait_for) -> None:
    ids = [submit(training={"iters": 2})["id"] for _ in range(3)]
    for job_id in ids:
        wait_for(job_id)
    page = api.get("/v1/jobs", params={"status": "succeeded", "limit": 2}).json()
    assert page["limit"] == 2 and len(page["items"]) == 2 and page["total"] >= 3
    assert [j["id"] for j in page["items"]] == ids[::-1][:2]  # newest first
    assert all(j["status"] == "succeeded" for j in page["items"])
    rest = api.get("/v1/jobs", params={"status": "succeeded", "limit": 2, "offset": 2}).json()
    assert rest["items"][0]["id"] == ids[0]
    assert api.get("/v1/jobs", params={"status": "done"}).status_code == 422


def test_cancel_a_running_job_then_delete_it(api, submit, wait_for) -> None:
    job = submit(training={"iters": 100_000})
    running = wait_for(job["id"], until=("running",))
    while api.get(job["links"]["self"]).json()["progress"]["iteration"] < 3:
        time.sleep(0.02)
    assert api.get(job["links"]["weights"]).status_code == 409
    busy = api.delete(job["links"]["self"])
    assert busy.status_code == 409 and "only finished jobs" in busy.json()["detail"]
    asked = time.monotonic()
    assert api.post(running["links"]["cancel"]).status_code == 200
    done = wait_for(job["id"], timeout=10)
    assert done["status"] == "cancelled" and time.monotonic() - asked < 2.0
    assert 3 <= done["progress"]["iteration"] < 100_000
    assert api.delete(job["links"]["self"]).status_code == 204
    assert api.get(job["links"]["self"]).status_code == 404
    assert job["id"] not in [j["id"] for j in api.get("/v1/jobs", params={"limit": 100}).json()["items"]]


def test_cancel_a_finished_job_changes_nothing(api, submit, wait_for) -> None:
    job = wait_for(submit(training={"iters": 2})["id"])
    assert api.post(job["links"]["cancel"]).json()["status"] == "succeeded"
