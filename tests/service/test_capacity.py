"""Capacity and queue position on a real cluster of ZDL_COORDINATORS=6 slots (class_cluster), one running
job per key: six keys' jobs run at once, and a queued job's `queue_position` counts down as jobs start,
the job at place 1 always being the one the fair scheduler starts next."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.service.conftest import ADMIN_KEY, SMALL_JOB, ClassCluster, fresh

LONG_JOB: dict[str, Any] = {**SMALL_JOB, "training": {**SMALL_JOB["training"], "iters": 100_000}}


@pytest.fixture
def cancel_afterwards(class_cluster: ClassCluster) -> Iterator[list[str]]:
    """Ids of jobs to cancel at the end (so the next test finds the slots free)."""
    made: list[str] = []
    yield made
    with class_cluster.client(ADMIN_KEY) as admin:
        for job_id in made:
            admin.post(f"/v1/jobs/{job_id}/cancel")
    for job_id in made:
        class_cluster.wait(job_id)


def running_keys(cluster: ClassCluster) -> list[str]:
    with cluster.client(ADMIN_KEY) as admin:
        page = admin.get("/v1/admin/jobs", params={"status": "running", "limit": 100}).json()
    return [j["key"] for j in page["items"]]


def wait_running(cluster: ClassCluster, count: int) -> list[str]:
    deadline = time.monotonic() + 120
    while len(keys := running_keys(cluster)) < count:
        assert time.monotonic() < deadline, f"only {keys} running"
        time.sleep(0.1)
    return keys


def coordinator_slots(cluster: ClassCluster) -> list[int]:
    """The slots of each coordinator worker alive (waiting out a heartbeat missed on a loaded machine)."""
    deadline = time.monotonic() + 30
    with cluster.client(ADMIN_KEY) as admin:
        while True:
            workers = admin.get("/v1/admin/workers").json()["items"]
            slots = [w["slots"] for w in workers if w["role"] == "coordinator"]
            if slots or time.monotonic() > deadline:
                return slots
            time.sleep(0.1)


def place(cluster: ClassCluster, key: str, job_id: str) -> tuple[str, int | None, float | None]:
    with cluster.client(key) as client:
        job = client.get(f"/v1/jobs/{job_id}").json()
    return job["status"], job["queue_position"], job["estimated_start_s"]


def test_six_coordinator_slots_run_six_keys_jobs_at_once_and_the_queue_counts_down(
        class_cluster: ClassCluster, cancel_afterwards: list[str]) -> None:
    assert coordinator_slots(class_cluster) == [6]
    names = [fresh("cap") for _ in range(6)]
    students = {name: class_cluster.add_key(name) for name in names}
    first = {}
    for name, key in students.items():
        with class_cluster.client(key) as client:
            first[name] = client.post("/v1/jobs", json=LONG_JOB).json()["id"]
        cancel_afterwards.append(first[name])
    assert sorted(wait_running(class_cluster, 6)) == sorted(students)  # six keys' jobs at once

    waiting_key = class_cluster.add_key(fresh("cap-waiting"))
    with class_cluster.client(waiting_key) as client:
        queued = [client.post("/v1/jobs", json=LONG_JOB).json()["id"] for _ in range(3)]
    cancel_afterwards.extend(queued)
    places = [place(class_cluster, waiting_key, job_id) for job_id in queued]
    assert [(status, position) for status, position, _ in places] == [("queued", 1), ("queued", 2), ("queued", 3)]
    starts = [start for _, _, start in places]
    assert all(s is not None for s in starts) and starts == sorted(starts)

    with class_cluster.client(ADMIN_KEY) as admin:
        freed = [first[names[0]], queued[0], queued[1]]  # each frees the slot the next queued job takes
        for step, job_id in enumerate(freed):
            assert admin.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
            assert class_cluster.wait(queued[step], until=("running",))["status"] == "running"
            left = [place(class_cluster, waiting_key, j) for j in queued[step + 1:]]
            assert [(status, position) for status, position, _ in left] == [
                ("queued", n + 1) for n in range(len(left))]
