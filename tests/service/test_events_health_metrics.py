"""Server-Sent Events, readiness and metrics, read over HTTP from the running service."""

from __future__ import annotations

import json
from typing import Any

import httpx


def read_events(client: httpx.Client, path: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of an SSE stream, until the server closes it."""
    events, name, data = [], None, []
    with client.stream("GET", path, timeout=30) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                events.append((name, json.loads("\n".join(data))))
                name, data = None, []
    return events


def test_events_stream_progress_until_the_end(api, submit) -> None:
    job = submit(training={"iters": 150})
    events = read_events(api, job["links"]["events"])
    kinds = [name for name, _ in events]
    assert kinds[0] == "status" and kinds[-1] == "status"
    assert events[-1][1]["status"] == "succeeded"
    progress = [data for name, data in events if name == "progress"]
    assert len(progress) >= 3
    iterations = [p["iteration"] for p in progress]
    assert iterations == sorted(iterations) and iterations[-1] == 150 and progress[-1]["total"] == 150
    assert all(p["loss"] > 0 for p in progress) and "test_acc" in progress[-1]


def test_events_of_a_finished_job_end_at_once(api, submit, wait_for) -> None:
    """One status event, the job as GET /v1/jobs/<id> shows it (every value read from the REST view)."""
    job = wait_for(submit(training={"iters": 2})["id"])
    events = read_events(api, job["links"]["events"])
    progress, latest = job["progress"], job["latest"]
    assert progress["iterations_per_s"] > 0 and latest["loss"] > 0
    assert events == [("status", {"type": "status", "status": "succeeded", "iteration": 2, "total": 2,
                                  "loss": latest["loss"], "train_acc": latest["train_acc"],
                                  "test_acc": latest["test_acc"], "iterations_per_s": progress["iterations_per_s"],
                                  "eta_s": 0.0})]


def test_healthz_and_readyz(api) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["workers"] == {"zdl.coordinator": 1, "zdl.blocks": 2}


def test_readyz_reports_missing_block_workers(api, blocks) -> None:
    blocks(0)
    ready = api.get("/readyz")
    assert ready.status_code == 503 and ready.json()["detail"] == "no live worker on zdl.blocks"


def test_metrics(api, submit, wait_for) -> None:
    wait_for(submit()["id"])
    response = api.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['zdl_jobs{status="succeeded"}'] >= 1
    assert samples["zdl_iterations_total"] >= 30
    assert samples['zdl_workers{queue="zdl.blocks"}'] == 2
    assert samples['zdl_gradient_block_seconds_bucket{le="+Inf"}'] >= 60  # 30 steps, 2 groups
    assert samples["zdl_gradient_block_seconds_count"] == samples['zdl_gradient_block_seconds_bucket{le="+Inf"}']
    assert samples["zdl_fanout_overhead_seconds_count"] >= 30
