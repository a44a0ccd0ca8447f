"""The sweeps API on the real service: a sweep's jobs, its results table, quotas, idempotency, cancel and delete."""

from __future__ import annotations

import time
from typing import Any

import pytest

from api.sweep_models import AxisName
from zdl.client.bodies import SWEEP_SETTINGS

#: Jobs made here are deleted after each test (the session key has a stored-jobs quota).
pytestmark = pytest.mark.usefixtures("leaves_no_jobs")

#: The small job of conftest.SMALL_JOB as a sweep's base: 784-8-10, 30 iterations of 20 samples.
BASE: dict[str, Any] = {"model": {"hidden_size": 8}, "dataset": "mnist",
                        "training": {"iters": 30, "batch_size": 20, "learning_rate": 0.1, "seed": 3}}
LONG = {**BASE, "training": {**BASE["training"], "iters": 100_000}}
FINISHED = ("succeeded", "failed", "cancelled")


def wait_sweep(api: Any, sweep_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (sweep := api.get(f"/v1/sweeps/{sweep_id}").json())["status"] != "finished":
        assert time.monotonic() < deadline, f"sweep {sweep_id} still {sweep['status']}: {sweep['counts']}"
        time.sleep(0.1)
    return sweep


def test_settings_match_the_client() -> None:
    assert list(AxisName.__args__) == list(SWEEP_SETTINGS)


def test_a_sweep_of_8_finishes_with_a_correct_table_and_the_bits_of_lone_runs(api, bits_equal) -> None:
    created = api.post("/v1/sweeps", json={"name": "lr x seed", "base": BASE,
                                           "grid": {"learning_rate": [0.05, 0.1, 0.5, 1], "seed": [1, 2]}})
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/sweeps/{created.json()['id']}"
    assert created.json()["size"] == 8 and created.json()["axes"] == ["learning_rate", "seed"]
    sweep = wait_sweep(api, created.json()["id"])
    assert sweep["counts"]["succeeded"] == 8 and sweep["name"] == "lr x seed"
    assert sweep["progress"] == {"iteration": 240, "total": 240}
    expected_params = [{"learning_rate": lr, "seed": seed} for lr in (0.05, 0.1, 0.5, 1) for seed in (1, 2)]
    assert sorted((r["index"], r["params"]) for r in sweep["runs"]) == list(enumerate(expected_params))

    ranked = []
    for run in sweep["runs"]:
        job = api.get(run["links"]["job"]).json()
        history = api.get(run["links"]["history"]).json()
        assert job["sweep"] == sweep["id"] and job["status"] == "succeeded"
        assert job["spec"]["training"] == {**BASE["training"], **run["params"]}
        assert job["spec"]["gradient"]["blocks"] == 1 and job["blocks"] == 1  # one group per job: jobs side by side
        assert run["final_loss"] == history["loss"][-1] and run["iteration"] == len(history["loss"]) == 30
        assert (run["train_acc"], run["test_acc"]) == (history["train_acc"][-1], history["test_acc"][-1])
        assert bits_equal(api, job), f"run {run['params']} differs from a local run of the same settings"
        ranked.append((-history["test_acc"][-1], history["loss"][-1], run["index"]))
    assert [(-r["test_acc"], r["final_loss"], r["index"]) for r in sweep["runs"]] == sorted(ranked)
    assert sweep["best"] == sweep["runs"][0]["job_id"]
    assert api.get("/v1/sweeps").json()["items"][0]["id"] == sweep["id"]  # newest first


def test_a_diverged_run_is_a_result_shown_as_such(api) -> None:
    """A learning rate of 1e308 overflows the output layer of 784-100-10 on the first step: NaN loss."""
    base = {**BASE, "model": {"hidden_size": 100}, "gradient": {"method": "backprop"}}
    created = api.post("/v1/sweeps", json={"base": base, "runs": [{"learning_rate": 0.5}, {"learning_rate": 1e308}]})
    sweep = wait_sweep(api, created.json()["id"])
    good, bad = sweep["runs"]
    assert good["params"] == {"learning_rate": 0.5} and good["status"] == "succeeded" and not good["diverged"]
    assert bad["params"] == {"learning_rate": 1e308} and bad["status"] == "failed" and bad["diverged"]
    assert bad["final_loss"] is None and "diverged: the loss became nan" in bad["error"]
    assert sweep["best"] == good["job_id"] and sweep["counts"]["failed"] == 1


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"grid": {"learning_rate": [0.1, -1]}}, "grid.learning_rate", "greater than 0 (got -1)"),
    ({"grid": {"hidden_size": [8, 5000]}}, "grid.hidden_size", "over the limit of 1024 (ZDL_MAX_HIDDEN_SIZE)"),
    ({"grid": {"dataset": ["mnist", "cifar"]}}, "grid.dataset", "'mnist' or 'fashion-mnist' (got 'cifar')"),
    ({"grid": {"gradient": ["sgd"]}}, "grid.gradient", "'numerical', 'numerical-reference' or 'backprop'"),
    ({"grid": {"lr": [0.1]}}, "grid.lr.[key]", "'learning_rate', 'hidden_size'"),
    ({"grid": {"iters": [1, 2]}}, "grid.iters.[key]", "'learning_rate'"),
    ({"grid": {"seed": [1, 1]}}, "grid", "seed has 1 more than once"),
    ({"grid": {"seed": []}}, "grid.seed", "at least 1 item"),
    ({"grid": {}}, "grid", "at least 1 item"),
    ({"grid": {"seed": [True]}}, "grid.seed.0", "must be a number or a name, got True"),
    ({"runs": [{"seed": [1]}]}, "runs.0.seed", "must be a number or a name, got [1]"),
    ({"runs": [{"hidden_size": 8}, {"hidden_size": 0}]}, "runs.1.hidden_size", "greater than or equal to 1 (got 0)"),
    ({"runs": [{"seed": 1}, {"seed": 1}]}, "runs", "entry 1 repeats an earlier one"),
    ({"runs": [{}]}, "runs", "entry 0 is empty"),
    ({"base": {**BASE, "training": {"iters": 0}}, "grid": {"seed": [1]}}, "base.training.iters", "greater than or"),
    ({"base": {**BASE, "training": {"iters": 100_000}}, "grid": {"gradient": ["numerical", "numerical-reference"]}},
     "base.training.iters", "ZDL_MAX_JOB_CORE_HOURS); use method numerical (the same gradient, exact, thousands of "
                            "times faster) or fewer iterations (in the run gradient=numerical-reference)"),
    ({"grid": {"seed": list(range(41))}}, "grid", "41 jobs, more than an API key may have queued or running"),
    ({"grid": {"seed": [1]}, "runs": [{"seed": 1}]}, "body", "give either `grid`"),
])
def test_invalid_sweeps_are_422_naming_the_field(api, body: dict[str, Any], field: str, words: str) -> None:
    before = api.get("/v1/jobs").json()["total"]
    response = api.post("/v1/sweeps", json={"base": BASE, **body})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{field}: ") and words in detail, detail
    assert api.get("/v1/jobs").json()["total"] == before  # nothing was created


def test_a_sweep_that_does_not_fit_is_refused_whole(app_client) -> None:
    client = app_client(max_active_jobs_per_key=5)
    body = {"base": BASE, "grid": {"seed": [1, 2, 3]}}
    assert client.post("/v1/sweeps", json=body).status_code == 201
    refused = client.post("/v1/sweeps", json=body)
    assert refused.status_code == 429
    assert refused.json()["detail"] == ("this API key already has 3 jobs queued or running, and these 3 jobs would "
                                        "exceed the limit (ZDL_MAX_ACTIVE_JOBS_PER_KEY=5); wait for one to finish "
                                        "or cancel one")
    assert client.get("/v1/jobs").json()["total"] == 3 and client.get("/v1/sweeps").json()["total"] == 1
    assert client.post("/v1/sweeps", json={**body, "grid": {"seed": [1, 2]}}).status_code == 201  # 5 fit


def test_a_sweep_over_the_stored_bytes_quota_is_refused_whole(app_client) -> None:
    client = app_client(max_stored_mb_per_key=1.0)  # a 784-50-10 job of 10,000 iterations reserves ~0.6 MiB
    refused = client.post("/v1/sweeps", json={"base": {"dataset": "mnist"}, "grid": {"seed": [1, 2]}})
    assert refused.status_code == 429 and "these 2 jobs' results need 1.2 MiB" in refused.json()["detail"]
    assert "ZDL_MAX_STORED_MB_PER_KEY" in refused.json()["detail"]
    assert client.get("/v1/jobs").json()["total"] == 0 and client.get("/v1/sweeps").json()["total"] == 0


def test_idempotency_key_returns_the_same_sweep(app_client) -> None:
    client = app_client()
    body = {"base": BASE, "grid": {"seed": [1, 2]}}
    first = client.post("/v1/sweeps", json=body, headers={"Idempotency-Key": "sweep-retry-1"})
    again = client.post("/v1/sweeps", json=body, headers={"Idempotency-Key": "sweep-retry-1"})
    assert first.status_code == again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert first.json()["id"] == again.json()["id"] and client.get("/v1/jobs").json()["total"] == 2
    other = client.post("/v1/sweeps", json={**body, "grid": {"seed": [1, 3]}},
                        headers={"Idempotency-Key": "sweep-retry-1"})
    assert other.status_code == 409 and "different request body" in other.json()["detail"]
    client.post("/v1/jobs", json=BASE, headers={"Idempotency-Key": "job-key-1"})
    mixed = client.post("/v1/sweeps", json=body, headers={"Idempotency-Key": "job-key-1"})
    assert mixed.status_code == 409 and "not (or no longer) part of a sweep" in mixed.json()["detail"]


def test_sweeps_are_private_to_their_key(api, stranger) -> None:
    sweep = api.post("/v1/sweeps", json={"base": BASE, "grid": {"seed": [5]}}).json()
    for method, path in [("GET", ""), ("POST", "/cancel"), ("DELETE", "")]:
        response = stranger.request(method, f"/v1/sweeps/{sweep['id']}{path}")
        assert response.status_code == 404 and response.json() == {"detail": "Sweep not found"}, (method, path)
    assert sweep["id"] not in [s["id"] for s in stranger.get("/v1/sweeps", params={"limit": 100}).json()["items"]]
    assert api.get(f"/v1/sweeps/{sweep['id']}").status_code == 200
    for method, path in [("GET", "/v1/sweeps"), ("POST", "/v1/sweeps"), ("GET", f"/v1/sweeps/{sweep['id']}")]:
        assert stranger.request(method, path, headers={"Authorization": "Bearer wrong"}).status_code == 401


@pytest.mark.parametrize("sweep_id", ["nope", "0" * 31, "A" * 32, "0" * 33, "../" + "0" * 29])
def test_unknown_sweep_ids_are_404(api, sweep_id: str) -> None:
    for method, path in [("GET", ""), ("POST", "/cancel"), ("DELETE", "")]:
        response = api.request(method, f"/v1/sweeps/{sweep_id}{path}")
        assert response.status_code == 404, (method, sweep_id, response.text)


def test_cancel_stops_every_job_within_2_s_then_delete_removes_them(api) -> None:
    sweep = api.post("/v1/sweeps", json={"base": LONG, "grid": {"seed": [1, 2, 3, 4, 5, 6]}}).json()
    deadline = time.monotonic() + 60
    while sum(run["iteration"] >= 3 for run in api.get(sweep["links"]["self"]).json()["runs"]) < 2:
        assert time.monotonic() < deadline, "no two jobs of the sweep got going"
        time.sleep(0.05)
    busy = api.delete(sweep["links"]["self"])
    assert busy.status_code == 409 and "cancel it first" in busy.json()["detail"]
    asked = time.monotonic()
    assert api.post(sweep["links"]["cancel"]).status_code == 200
    while (now := api.get(sweep["links"]["self"]).json())["status"] != "finished":
        assert time.monotonic() - asked < 5, now["counts"]
        time.sleep(0.02)
    assert time.monotonic() - asked < 2.0 and now["counts"]["cancelled"] == 6
    assert all(run["iteration"] < 100_000 for run in now["runs"])
    assert api.delete(sweep["links"]["self"]).status_code == 204
    assert api.get(sweep["links"]["self"]).status_code == 404
    assert all(api.get(run["links"]["job"]).status_code == 404 for run in now["runs"])


def test_a_sweep_whose_jobs_are_all_gone_is_forgotten(api) -> None:
    sweep = wait_sweep(api, api.post("/v1/sweeps", json={"base": BASE, "grid": {"seed": [7, 8]}}).json()["id"])
    first, second = sweep["runs"]
    assert api.delete(first["links"]["job"]).status_code == 204
    partly = api.get(sweep["links"]["self"]).json()
    assert partly["counts"]["deleted"] == 1 and partly["status"] == "finished"
    assert [r["status"] for r in partly["runs"]][-1] == "deleted"  # a deleted job ranks last
    assert api.delete(second["links"]["job"]).status_code == 204
    listed = [s["id"] for s in api.get("/v1/sweeps", params={"limit": 100}).json()["items"]]
    assert sweep["id"] not in listed and api.get(sweep["links"]["self"]).status_code == 404

