"""Admission by cost: the service accepts only work it can finish, says why it refuses the rest, and shows what
it accepts will cost (worker/scheduling/plan.py, from zdl.engine.cost)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow


def body(method: str = "numerical", hidden: int = 50, batch: int = 100, iters: int = 10_000,
         dataset: str = "mnist") -> dict[str, Any]:
    return {"dataset": dataset, "model": {"hidden_size": hidden}, "training": {"iters": iters, "batch_size": batch},
            "gradient": {"method": method}}


@pytest.mark.parametrize("method", ["numerical", "backprop"])
def test_the_books_run_is_admitted_with_an_estimate(app_client, method: str) -> None:
    client = app_client()
    response = client.post("/v1/jobs", json=body(method))
    assert response.status_code == 201, response.text
    estimate = response.json()["estimate"]
    assert 1 < estimate["core_seconds"] < 600  # the book's 10,000 iterations: well under a core-hour
    assert 150 < estimate["group_memory_mb"] < 1024 and estimate["wall_s"] > 0
    again = client.get(response.json()["links"]["self"]).json()["estimate"]
    assert again["core_seconds"] == estimate["core_seconds"]


def test_the_books_procedure_is_admitted_only_for_short_runs(app_client) -> None:
    client = app_client()
    short = client.post("/v1/jobs", json=body("numerical-reference", iters=50))
    assert short.status_code == 201, short.text
    assert short.json()["estimate"]["core_seconds"] > 50 * 5  # seconds per iteration, not milliseconds
    refused = client.post("/v1/jobs", json=body("numerical-reference"))
    assert refused.status_code == 422
    error = refused.json()["errors"][0]
    assert error["field"] == "training.iters"
    message = error["message"]
    assert "core-hours, over the limit of 2 (ZDL_MAX_JOB_CORE_HOURS)" in message
    assert "method numerical" in message and "fewer iterations" in message


@pytest.mark.parametrize("spec, field, words", [
    (body("numerical-reference", hidden=1024, batch=10_000, iters=1), "training.iters", "ZDL_MAX_JOB_CORE_HOURS"),
    (body("numerical", hidden=1024, batch=1000, iters=100_000, dataset="fashion-mnist"), "training.iters",
     "core-hours"),
    (body("numerical", hidden=1024, batch=10_000, iters=1, dataset="fashion-mnist"), "model.hidden_size",
     "block workers turn to other jobs"),
    (body("backprop", hidden=1024, batch=10_000, iters=100_000), "training.iters", "fewer iterations"),
])
def test_over_cost_jobs_are_refused_with_the_estimate_and_what_to_change(app_client, spec, field, words) -> None:
    response = app_client().post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["field"] == field and words in error["message"], error
    assert any(ch.isdigit() for ch in error["message"])  # it gives the estimate


def test_a_group_too_large_for_a_worker_is_refused(app_client) -> None:
    client = app_client(worker_memory_mb=200)
    response = client.post("/v1/jobs", json=body(hidden=1024, batch=10_000, iters=1))
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["field"] == "training.batch_size" and "ZDL_WORKER_MEMORY_MB" in error["message"]
    assert client.post("/v1/jobs", json=body(iters=100)).status_code == 201  # the book's size fits in 200 MB


def test_estimates_are_in_this_machines_core_seconds(app_client) -> None:
    """Unpinned, the API measures the machine's speed at its start (zdl.engine.speed) and scales the cost
    model's reference core-seconds by it: kernel work by one factor, BLAS work (evaluations, backprop) by
    the other, so each estimate lies between the reference's times the two factors."""
    from zdl.engine.speed import machine_speed

    speed = machine_speed()
    low, high = sorted((speed.kernel, speed.blas))
    reference, measured = app_client(machine_speed=1.0), app_client(machine_speed=None)
    for method in ("numerical", "numerical-reference", "backprop"):
        spec = body(method, iters=10)
        at_one = reference.post("/v1/jobs", json=spec).json()["estimate"]["core_seconds"]
        here = measured.post("/v1/jobs", json=spec).json()["estimate"]["core_seconds"]
        assert at_one * low * (1 - 1e-9) <= here <= at_one * high * (1 + 1e-9), (method, at_one, here, speed)
        assert here != at_one  # measured factors are never exactly the reference machine's 1
    pinned = app_client(machine_speed=3.0).post("/v1/jobs", json=body(iters=10)).json()["estimate"]["core_seconds"]
    assert pinned == pytest.approx(3.0 * reference.post("/v1/jobs", json=body(iters=10)).json()["estimate"][
        "core_seconds"], rel=1e-9)
