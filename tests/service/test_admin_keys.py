"""Named keys managed live, and the admin's view, on a real cluster with two API processes (class_cluster).

A key made on one API process works at once on the other; a revoked key is refused by both within the
key cache's period and its running job ends `cancelled`; admin routes are 403 for a student, whose
jobs stay private from other students, while an admin reads and cancels any job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from api.key_cache import TTL_S
from tests.service.conftest import ADMIN_KEY, SMALL_JOB, ClassCluster, fresh
from zdl.client import Client, Conflict

#: The command line `zdl` (as tests/service/test_cli.py runs it).
ZDL = [sys.executable, "-c", "import sys; from zdl.cli import main; sys.exit(main())"]
#: A job that runs until it is cancelled (minutes at least), on the 784-8-10 net.
LONG_JOB: dict[str, Any] = {**SMALL_JOB, "training": {**SMALL_JOB["training"], "iters": 100_000}}


def submit(cluster: ClassCluster, key: str, body: dict[str, Any] = SMALL_JOB, api: int = 0) -> dict[str, Any]:
    with cluster.client(key, api) as client:
        made = client.post("/v1/jobs", json=body)
    assert made.status_code == 201, made.text
    return dict(made.json())


def test_bootstrap_admin_key_is_named_admin(class_cluster: ClassCluster) -> None:
    with class_cluster.client(ADMIN_KEY) as admin:
        keys = {k["name"]: k for k in admin.get("/v1/admin/keys").json()["items"]}
        usage = admin.get("/v1/usage").json()
    assert keys["admin"]["admin"] is True and keys["admin"]["origin"] == "env"
    assert usage["name"] == "admin" and usage["admin"] is True
    assert ADMIN_KEY not in str(keys)  # the key itself is never shown again


def test_key_made_live_works_at_once_on_another_api_process(class_cluster: ClassCluster) -> None:
    key = class_cluster.add_key(name := fresh("alice-live"))  # made through API process 0
    with class_cluster.client(key, api=1) as alice:  # used at once through API process 1
        listed = alice.get("/v1/jobs")
        usage = alice.get("/v1/usage").json()
    assert listed.status_code == 200, listed.text
    assert usage["name"] == name and usage["admin"] is False and usage["keys"] is None
    job = submit(class_cluster, key, api=1)
    assert class_cluster.wait(job["id"])["status"] == "succeeded"
    with class_cluster.client(ADMIN_KEY) as admin:
        listed_keys = {k["name"]: k for k in admin.get("/v1/admin/keys").json()["items"]}
    assert listed_keys[name]["last_used_at"] is not None
    assert listed_keys[name]["usage"]["jobs"]["succeeded"] == 1


@pytest.mark.parametrize("name", ["Alice", "a b", "", "-dash-first", "x" * 65, "name/slash"])
def test_a_bad_name_is_a_422(class_cluster: ClassCluster, name: str) -> None:
    with class_cluster.client(ADMIN_KEY) as admin:
        refused = admin.post("/v1/admin/keys", json={"name": name})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "name"


def test_a_name_in_use_is_a_409(class_cluster: ClassCluster) -> None:
    class_cluster.add_key("bob-twice")
    with class_cluster.client(ADMIN_KEY) as admin:
        again = admin.post("/v1/admin/keys", json={"name": "bob-twice"})
    assert again.status_code == 409 and "bob-twice" in again.json()["detail"]


def test_revoked_key_is_refused_by_every_api_process_and_its_running_job_cancelled(
        class_cluster: ClassCluster) -> None:
    key = class_cluster.add_key(name := fresh("carol-revoked"))
    finished = submit(class_cluster, key)
    assert class_cluster.wait(finished["id"])["status"] == "succeeded"
    running = submit(class_cluster, key, LONG_JOB)
    class_cluster.wait(running["id"], until=("running",))
    clients = [class_cluster.client(key, api) for api in (0, 1)]
    try:
        for client in clients:  # both processes have the key in their cache now
            assert client.get("/v1/jobs").status_code == 200
        with class_cluster.client(ADMIN_KEY) as admin:
            revoked = admin.delete(f"/v1/admin/keys/{name}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json() == {"name": name, "cancelled": 1}
        assert clients[0].get("/v1/jobs").status_code == 401  # the revoking process: at once
        time.sleep(TTL_S)  # the other: once its cache entry has run out (TTL_S, half a second)
        for client in clients:
            assert client.get("/v1/jobs").status_code == 401
            assert client.post("/v1/jobs", json=SMALL_JOB).status_code == 401
    finally:
        for client in clients:
            client.close()
    assert class_cluster.wait(running["id"])["status"] == "cancelled"
    with class_cluster.client(ADMIN_KEY) as admin:  # stored jobs stay, for admins to read
        kept = admin.get(f"/v1/jobs/{finished['id']}")
        listed = admin.get("/v1/admin/jobs", params={"status": "succeeded", "limit": 100}).json()["items"]
        gone = admin.delete(f"/v1/admin/keys/{name}")
    assert kept.status_code == 200 and kept.json()["status"] == "succeeded"
    assert [j["key"] for j in listed if j["id"] == finished["id"]] == [None]  # its key is gone
    assert gone.status_code == 404


def test_admin_routes_are_403_for_a_student(class_cluster: ClassCluster) -> None:
    key = class_cluster.add_key("dave-student")
    with class_cluster.client(key) as student:
        answers = [student.get("/v1/admin/keys"), student.post("/v1/admin/keys", json={"name": "eve"}),
                   student.delete("/v1/admin/keys/admin"), student.get("/v1/admin/jobs"),
                   student.get("/v1/admin/workers")]
    assert [a.status_code for a in answers] == [403] * 5
    with class_cluster.client(ADMIN_KEY) as admin:
        assert "eve" not in {k["name"] for k in admin.get("/v1/admin/keys").json()["items"]}


def test_an_admin_reads_and_cancels_a_students_job_and_other_students_cannot(class_cluster: ClassCluster) -> None:
    owner, other = class_cluster.add_key("frank-owner"), class_cluster.add_key("grace-other")
    job = submit(class_cluster, owner, LONG_JOB)
    class_cluster.wait(job["id"], until=("running",))
    with class_cluster.client(other) as stranger:
        assert stranger.get(f"/v1/jobs/{job['id']}").status_code == 404
        assert stranger.post(f"/v1/jobs/{job['id']}/cancel").status_code == 404
    with class_cluster.client(ADMIN_KEY) as admin:
        listed = admin.get("/v1/admin/jobs", params={"key": "frank-owner"}).json()
        assert [(j["id"], j["key"], j["status"]) for j in listed["items"]] == [(job["id"], "frank-owner", "running")]
        assert admin.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
        assert class_cluster.wait(job["id"])["status"] == "cancelled"
        assert admin.get(f"/v1/jobs/{job['id']}/history").status_code == 200
        assert admin.delete(f"/v1/jobs/{job['id']}").status_code == 204
        assert admin.get("/v1/admin/jobs", params={"key": "nobody-such"}).status_code == 404
    with class_cluster.client(owner) as student:
        assert student.get(f"/v1/jobs/{job['id']}").status_code == 404  # deleted by the admin


def test_an_admin_reads_and_cancels_a_students_sweep(class_cluster: ClassCluster) -> None:
    owner = class_cluster.add_key("heidi-sweeps")
    body = {"base": {**LONG_JOB}, "grid": {"learning_rate": [0.1, 0.2]}}
    with class_cluster.client(owner) as student:
        made = student.post("/v1/sweeps", json=body)
    assert made.status_code == 201, made.text
    sweep = made.json()
    with class_cluster.client(ADMIN_KEY) as admin:
        assert admin.get(f"/v1/sweeps/{sweep['id']}").status_code == 200
        assert admin.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 200
    assert len(sweep["runs"]) == 2
    for run in sweep["runs"]:
        assert class_cluster.wait(run["job_id"])["status"] == "cancelled"


def test_admin_metrics_are_labelled_by_key_name(class_cluster: ClassCluster) -> None:
    key = class_cluster.add_key("ivan-metrics")
    assert class_cluster.wait(submit(class_cluster, key)["id"])["status"] == "succeeded"
    with class_cluster.client(ADMIN_KEY) as admin, class_cluster.client(key) as student:
        everyone, own = admin.get("/metrics").text, student.get("/metrics").text
    assert 'zdl_key_jobs{key="ivan-metrics",status="succeeded"} 1.0' in everyone
    assert 'zdl_key_cpu_seconds_total{key="ivan-metrics"}' in everyone
    assert "zdl_key_" not in own


def test_cli_and_client_manage_keys(class_cluster: ClassCluster) -> None:
    env = {**os.environ, "ZDL_URL": class_cluster.url, "ZDL_API_KEY": ADMIN_KEY}

    def zdl(*args: str) -> str:
        done = subprocess.run([*ZDL, *args], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    made = zdl("keys", "add", "judy-cli", "--running-jobs", "2")
    key = made.split("judy-cli: ")[1].split()[0]
    with Client(class_cluster.urls[1], key) as judy:
        assert judy.usage()["limits"]["running_jobs"] == 2
    assert "judy-cli" in zdl("keys", "list")
    assert "revoked judy-cli" in zdl("keys", "revoke", "judy-cli")
    with Client(class_cluster.url, ADMIN_KEY) as admin:
        made_by_client = admin.admin.add_key("ken-client", admin=True)
        with pytest.raises(Conflict):
            admin.admin.add_key("ken-client")
        assert "ken-client" in {k["name"] for k in admin.admin.keys()}
        assert admin.admin.revoke_key("ken-client")["name"] == "ken-client"
    denied = subprocess.run([*ZDL, "keys", "list"], capture_output=True, text=True,
                            env={**env, "ZDL_API_KEY": made_by_client["key"]}, timeout=60, check=False)
    assert denied.returncode != 0 and "401" in denied.stderr and "Traceback" not in denied.stderr
