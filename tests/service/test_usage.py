"""Measured usage on a real cluster: every job records the CPU time its work took in the coordinator and the
block workers, and a key's /v1/usage total is the sum of its jobs', bounded by what the processes used.

The independent check is the kernel's own account: the CPU time of the worker processes (from
/proc/<pid>/stat, the coordinator's pool processes included) grows at least by what the jobs recorded.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import ADMIN_KEY, SMALL_JOB, ClassCluster, fresh

#: Fan-out (blocks auto), a gang of 2 replicas (blocks 2 with 2 block workers), and backprop in the coordinator.
JOBS: list[dict[str, Any]] = [
    {**SMALL_JOB, "training": {**SMALL_JOB["training"], "iters": 200}},
    {**SMALL_JOB, "training": {**SMALL_JOB["training"], "iters": 200},
     "gradient": {"method": "numerical", "blocks": 2}},
    {**SMALL_JOB, "training": {**SMALL_JOB["training"], "iters": 2000}, "gradient": {"method": "backprop"}},
]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process and all its descendants now alive (/proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                    for c in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / ticks + sum(process_cpu_s(c) for c in children)


def workers_cpu_s(cluster: ClassCluster) -> float:
    procs = [cluster.cluster.coordinator, *cluster.cluster.extra_coordinators, *cluster.cluster.blocks]
    return sum(process_cpu_s(p.pid) for p in procs if p is not None)


def settled_usage(cluster: ClassCluster, key: str, job_ids: list[str]) -> tuple[float, list[dict[str, Any]]]:
    """The key's usage total and its jobs, read once both agree (a block loop may still add its last part)."""
    deadline = time.monotonic() + 30
    with cluster.client(key) as client:
        while True:
            total = client.get("/v1/usage").json()["usage"]["cpu_seconds"]
            jobs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in job_ids]
            again = client.get("/v1/usage").json()["usage"]["cpu_seconds"]
            if total == again and total == pytest.approx(sum(j["cpu_seconds"] or 0.0 for j in jobs), rel=1e-9):
                return total, jobs
            assert time.monotonic() < deadline, f"usage {total} never matched its jobs' {jobs}"
            time.sleep(0.2)


def test_usage_is_the_sum_of_the_jobs_measured_cpu_time(class_cluster: ClassCluster) -> None:
    key = class_cluster.add_key(name := fresh("usage-sum"))
    before = workers_cpu_s(class_cluster)
    with class_cluster.client(key) as client:
        made = [client.post("/v1/jobs", json=body) for body in JOBS]
    assert all(m.status_code == 201 for m in made), [m.text for m in made]
    ids = [m.json()["id"] for m in made]
    finished = [class_cluster.wait(job_id) for job_id in ids]
    assert [j["status"] for j in finished] == ["succeeded"] * 3, finished
    assert finished[1]["blocks"] == 2  # the gang's replicas measured theirs too
    total, jobs = settled_usage(class_cluster, key, ids)
    used = workers_cpu_s(class_cluster) - before
    assert all(j["cpu_seconds"] > 0 for j in jobs), jobs
    assert 0 < total <= used, (total, used)
    for job in jobs:  # the weights and history it stores, within what was reserved for them
        with class_cluster.client(key) as client:
            weights = client.get(f"/v1/jobs/{job['id']}/weights").content
        assert len(weights) < job["stored_bytes"] <= len(weights) + 32 * job["spec"]["training"]["iters"] + 8192
    with class_cluster.client(ADMIN_KEY) as admin:
        everyone = {k["name"]: k for k in admin.get("/v1/usage").json()["keys"]}
    assert everyone[name]["usage"]["cpu_seconds"] == pytest.approx(total, rel=1e-9)
    assert everyone[name]["usage"]["jobs"]["succeeded"] == 3


def test_a_key_past_its_core_hours_gets_a_429(class_cluster: ClassCluster) -> None:
    key = class_cluster.add_key(fresh("usage-capped"), core_hours=1e-6)  # 3.6 ms of CPU
    with class_cluster.client(key) as client:
        first = client.post("/v1/jobs", json=JOBS[0])
        assert first.status_code == 201, first.text
        assert class_cluster.wait(first.json()["id"])["status"] == "succeeded"
        usage = client.get("/v1/usage").json()
        refused = client.post("/v1/jobs", json=JOBS[0])
    assert usage["limits"]["core_hours"] == 1e-6 and usage["usage"]["cpu_seconds"] > 3.6e-3
    assert refused.status_code == 429 and "core-hours" in refused.json()["detail"]
