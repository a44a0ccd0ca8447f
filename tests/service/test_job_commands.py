"""`zdl jobs`, `zdl status`, `zdl cancel` and `zdl download` as separate processes against the session cluster."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.test_cli import zdl
from tests.service.test_cluster_commands import one_line_error
from zdl.io import load_weights

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("leaves_no_jobs")]


@pytest.fixture
def env(cluster: Any, keys: dict[str, str]) -> dict[str, str]:
    """The session cluster by $ZDL_URL and $ZDL_API_KEY (what `zdl cluster up` saved is not looked at)."""
    return {"ZDL_URL": cluster.url, "ZDL_API_KEY": keys["mine"]}


def test_jobs_status_and_download_of_a_finished_job(env: dict[str, str], api: httpx.Client, tmp_path: Path,
                                                    submit: Callable[..., dict[str, Any]],
                                                    wait_for: Callable[..., dict[str, Any]]) -> None:
    job = wait_for(submit()["id"])
    assert job["status"] == "succeeded"
    listed = zdl("jobs", env=env)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["id", "status", "progress", "loss", "test_acc", "created", "settings"]
    row = next(line for line in rows if line.startswith(job["id"][:8]))
    assert row.split()[1:3] == ["succeeded", "30/30"]

    status = zdl("status", job["id"][:8], env=env)  # a prefix is enough
    assert status.returncode == 0, status.stderr
    assert f"job {job['id']}: succeeded, iteration 30 of 30" in status.stdout
    assert f"test_acc {job['latest']['test_acc']:.4g}" in status.stdout

    out = tmp_path / "out"
    downloaded = zdl("download", job["id"], "--out", str(out), env=env)
    assert downloaded.returncode == 0, downloaded.stderr
    assert {p.name for p in out.iterdir()} == {"history.json", "weights.npz", "loss.png", "accuracy.png"}
    served = load_weights(api.get(job["links"]["weights"]).content).params
    written = load_weights(out / "weights.npz").params
    assert all(np.array_equal(served[k], written[k]) for k in served)
    assert json.loads((out / "history.json").read_text())["loss"] == api.get(job["links"]["history"]).json()["loss"]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cancel_a_running_job_then_nothing_to_download(env: dict[str, str], tmp_path: Path,
                                                       submit: Callable[..., dict[str, Any]],
                                                       wait_for: Callable[..., dict[str, Any]]) -> None:
    job = submit(training={"iters": 100000})
    wait_for(job["id"], until=("running",))
    cancelled = zdl("cancel", job["id"][:10], env=env)
    assert cancelled.returncode == 0 and f"job {job['id']}" in cancelled.stdout, cancelled.stderr
    assert wait_for(job["id"])["status"] == "cancelled"
    out = tmp_path / "out"
    one_line_error(zdl("download", job["id"], "--out", str(out), env=env), f"job {job['id']} is cancelled",
                   "only a succeeded job has results")
    assert not out.exists()
    again = zdl("cancel", job["id"], env=env)
    assert again.returncode == 0 and "already ended (cancelled)" in again.stdout


def test_expected_failures_are_one_line(env: dict[str, str], cluster: Any) -> None:
    one_line_error(zdl("status", "f00dfeed", env=env), "no job 'f00dfeed' for this key")
    one_line_error(zdl("jobs", env={**env, "ZDL_API_KEY": "not-a-key"}), "401 invalid API key", "$ZDL_API_KEY")
    one_line_error(zdl("cancel", "abc", "--url", "http://127.0.0.1:9", env=env), "cannot reach the zdl service")


def test_a_strangers_job_is_not_found(env: dict[str, str], keys: dict[str, str],
                                      submit: Callable[..., dict[str, Any]]) -> None:
    job = submit(training={"iters": 5})
    one_line_error(zdl("status", job["id"], env={**env, "ZDL_API_KEY": keys["other"]}), f"no job '{job['id']}'")


def test_submit_detach_prints_the_id_and_the_flags_have_the_books_names(
        env: dict[str, str], api: httpx.Client, wait_for: Callable[..., dict[str, Any]]) -> None:
    ids = []
    for names in (["--hidden-size", "4", "--learning-rate", "0.5"], ["--hidden", "4", "--lr", "0.5"]):
        result = zdl("submit", "--detach", *names, "--iters", "5", "--batch-size", "10", env=env)
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(r"[0-9a-f]{32}\n", result.stdout), result.stdout  # the id alone: $(zdl submit --detach)
        ids.append(result.stdout.strip())
    for job_id in ids:
        spec = api.get(f"/v1/jobs/{job_id}").json()["spec"]
        assert spec["model"]["hidden_size"] == 4 and spec["training"]["learning_rate"] == 0.5
        assert wait_for(job_id)["status"] == "succeeded"
    one_line_error(zdl("submit", "--iters", "5", env=env), "give --out DIR", "--detach")
