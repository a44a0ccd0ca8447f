"""The docker compose cluster for real, where a Docker engine can run: built (on local stand-ins for the
official base images where Docker Hub is out of reach), started with 2 block workers and cut off from
everything beyond this host, its Redis servers locked, a job trained while Redis restarts and compared bit
for bit with `zdl train`, and torn down with the host's firewall and forwarding as they were."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from tests.service import docker_engine
from tests.service.compose_project import (
    OFFICIAL_BASES,
    REPO,
    ComposeProject,
    base_images,
    blocked_outside,
    build_app_image,
    compose_command,
    host_outside,
    reaches,
    wait_finished,
    wait_ready,
)
from worker.cluster.processes import free_port
from worker.cluster.redis_auth import APP_USER, acl_file_text

#: Slow, and needs Docker: CI runs them (a skip there is a failure). The first one builds what is not cached yet.
pytestmark = [pytest.mark.compose, pytest.mark.slow, pytest.mark.timeout(900)]

log = logging.getLogger(__name__)
SECRETS = ("ZDL_API_KEYS", "ZDL_SECRET_KEY", "ZDL_REDIS_PASSWORD")
#: A job of a few milliseconds, for the tests that need one to have run.
SMALL_JOB = {"model": {"hidden_size": 8}, "dataset": "mnist", "training": {"iters": 2, "batch_size": 10}}


@dataclass
class Docker:
    cli: str
    compose: list[str]
    bases: dict[str, str]
    log_dir: Path


@dataclass
class Cluster:
    project: ComposeProject
    http: httpx.Client
    secrets: dict[str, str]
    reaches_outside_unblocked: bool
    reaches_outside_blocked: bool


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    """A Docker engine with the images built; afterwards the host's firewall and forwarding as they were."""
    reason = docker_engine.unavailable_reason()
    compose = compose_command("docker") if reason is None else None
    if reason is None and compose is None:
        reason = "neither `docker compose` nor docker-compose is installed (Debian: apt-get install docker-compose)"
    if reason:
        pytest.skip(f"no Docker engine for the compose tests: {reason}")
    assert compose is not None
    log_dir = tmp_path_factory.mktemp("docker")
    with docker_engine.engine(log_dir) as engine:
        bases = base_images(engine.docker)
        build_app_image(engine.docker, bases)
        yield Docker(engine.docker, compose, bases, log_dir)
    after = docker_engine.HostNetwork.read()
    # Settings that appeared meanwhile (br_netfilter's, once dockerd loaded it) had no value to go back to.
    after_sysctls = {name: value for name, value in after.sysctls.items() if name in engine.before.sysctls}
    assert (after.firewall, after_sysctls) == (engine.before.firewall, engine.before.sysctls), \
        f"the host's network changed:\nbefore {engine.before}\nafter {after}"


def project_env(docker: Docker, **values: str) -> dict[str, str]:
    """This process's environment without ZDL_* variables, plus the base images and `values`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ZDL_")}
    return {**env, **docker.bases, **values}


@pytest.fixture(scope="module")
def cluster(docker: Docker, mnist_dir: Path) -> Iterator[Cluster]:
    """redis, redis-steps, api, coordinator and 2 block workers on real MNIST, nothing forwarded beyond this host."""
    keys = {"ZDL_API_KEYS": secrets.token_urlsafe(16), "ZDL_SECRET_KEY": secrets.token_hex(32),
            "ZDL_REDIS_PASSWORD": secrets.token_hex(24)}
    port = free_port()
    env = project_env(docker, **keys, ZDL_DATA_HOST_DIR=str(mnist_dir), ZDL_API_PUBLISHED_PORT=str(port))
    project = ComposeProject(docker.compose, f"zdltest{os.getpid()}", env)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                        headers={"Authorization": f"Bearer {keys['ZDL_API_KEYS']}"})
    try:
        project("up", "--no-start", "--scale", "worker=2")
        with host_outside() as outside:
            unblocked = reaches(project, *outside)
            with blocked_outside(project.bridge(docker.cli)):
                try:
                    blocked = reaches(project, *outside)
                    project("up", "-d", "--scale", "worker=2")
                    wait_ready(http, block_workers=2)
                    yield Cluster(project, http, keys, unblocked, blocked)
                finally:  # down while the rules are still in
                    logs = docker.log_dir / "compose.log"
                    logs.write_text(project("logs", "--no-color", check=False).stdout)
                    log.info("the cluster's logs: %s", logs)
                    project("down", "-v", "--remove-orphans", "-t", "5", check=False)
    finally:
        http.close()
        project("down", "-v", "--remove-orphans", "-t", "5", check=False)  # if it failed before the rules


@pytest.mark.parametrize("password", ["has space", "has@at", "has:colon"])
def test_redis_refuses_a_password_unfit_for_urls(docker: Docker, password: str) -> None:
    """The Redis entrypoint stops with a message before writing an ACL file (the password goes into redis:// URLs)."""
    service = yaml.safe_load((REPO / "docker-compose.yml").read_text().replace("$$", "$"))["x-redis"]
    image = docker.bases.get("ZDL_REDIS_IMAGE", OFFICIAL_BASES[1])
    done = docker_engine.run(docker.cli, "run", "--rm", "--user", "redis", "-e", "ZDL_REDIS_PASSWORD", "--entrypoint",
                             "sh", image, *service["entrypoint"][1:], check=False,
                             env={**os.environ, "ZDL_REDIS_PASSWORD": password}, timeout=60)
    assert done.returncode == 1
    assert "ZDL_REDIS_PASSWORD must be non-empty and hold only letters, digits and - . _ ~" in done.stderr


@pytest.mark.parametrize("missing", SECRETS)
def test_compose_refuses_to_start_without_a_secret(docker: Docker, missing: str) -> None:
    """A clear message at `up` and no container made, instead of an API that restarts forever."""
    env = project_env(docker, **{name: "x" for name in SECRETS if name != missing})
    project = ComposeProject(docker.compose, f"zdlrefused{os.getpid()}", env)
    done = project("up", "-d", check=False)
    assert done.returncode != 0
    assert f"set {missing}" in done.stdout + done.stderr
    assert project.containers(docker.cli) == []


def test_containers_reach_nothing_beyond_this_host(cluster: Cluster) -> None:
    """A host beyond this one (a network namespace here) is reachable from the project's network until the
    test's firewall chain is in (jumped to from DOCKER-USER), and not after; the cluster runs only with it in."""
    assert cluster.reaches_outside_unblocked, "the probe cannot tell: even without the rules nothing was reached"
    assert not cluster.reaches_outside_blocked


def test_redis_servers_are_locked(cluster: Cluster) -> None:
    project, password = cluster.project, cluster.secrets["ZDL_REDIS_PASSWORD"]
    as_app = 'REDISCLI_AUTH="$ZDL_REDIS_PASSWORD" redis-cli '
    for service, maxmemory in (("redis", 1 << 30), ("redis-steps", 512 << 20), ("redis-broker", 256 << 20)):
        assert "NOAUTH" in project.exec(service, "redis-cli", "get", "x")
        assert "WRONGPASS" in project.exec(service, "redis-cli", "auth", APP_USER, password[::-1])
        assert project.exec(service, "sh", "-c", as_app + "ping").strip() == "PONG"
        for command in ("config get dir", "flushall", "acl list", "module list", "shutdown"):
            assert "NOPERM" in project.exec(service, "sh", "-c", as_app + command), command
        memory = dict(line.split(":", 1) for line in project.exec(service, "sh", "-c", as_app + "info memory")
                      .splitlines() if ":" in line)
        assert (memory["maxmemory"], memory["maxmemory_policy"]) == (str(maxmemory), "noeviction")
        assert project.exec(service, "cat", "/tmp/users.acl") == acl_file_text(password)
        assert project.exec(service, "stat", "-c", "%a %U", "/tmp/users.acl").split() == ["600", "redis"]
    commands = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            commands.append(cmdline.read_bytes())
        except OSError:  # the process has ended
            continue
    assert not [c for c in commands if password.encode() in c], "the Redis password is on a command line"


def test_job_survives_a_redis_restart_with_the_bits_of_zdl_train(cluster: Cluster, mnist_dir: Path,
                                                                  tmp_path: Path) -> None:
    """The book's run for 200 iterations; Redis restarts mid-job; once /readyz is ready again no request gets a
    5xx, the job succeeds, and its weights are bit-identical to `zdl train` with the same settings."""
    http, project = cluster.http, cluster.project
    job_id = http.post("/v1/jobs", json={"dataset": "mnist", "training": {"iters": 200}}).json()["id"]
    while (before := http.get(f"/v1/jobs/{job_id}").json())["progress"]["iteration"] < 20:
        time.sleep(0.1)
    assert before["status"] == "running", before  # so Redis restarts mid-job (a step needs it)
    project("restart", "-t", "10", "redis")
    wait_ready(http, block_workers=2)
    statuses = []
    statuses.append(http.post("/v1/jobs", json=SMALL_JOB).status_code)
    deadline = time.monotonic() + 300
    while True:
        job = http.get(f"/v1/jobs/{job_id}")
        statuses += [job.status_code, http.get("/v1/jobs").status_code]
        if job.status_code != 200 or job.json()["status"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, f"job {job_id} did not finish in 300 s: {job.text}"
        time.sleep(0.2)
    assert max(statuses) < 500, f"after /readyz was ready again: {statuses}"
    assert job.status_code == 200 and job.json()["status"] == "succeeded", job.text
    served = np.load(io.BytesIO(http.get(f"/v1/jobs/{job_id}/weights").content))
    local = np.load(local_training(project, mnist_dir, tmp_path))
    for name in ("W1", "b1", "W2", "b2"):
        assert served[name].tobytes() == local[name].tobytes(), \
            f"{name}: max |difference| {np.abs(served[name] - local[name]).max()}"


def test_a_rolling_upgrade_hands_the_job_over_with_the_bits_of_zdl_train(cluster: Cluster, mnist_dir: Path,
                                                                        tmp_path: Path) -> None:
    """The upgrade docs/operations.md gives for compose: the coordinator's, then the block workers', then the
    API's containers recreated while the book's run trains. `docker stop` signals only a container's first
    process (Celery's main one); the job is handed over all the same (its log says its coordinator was stopped
    and saved a checkpoint, not that its lease lapsed), and its weights are bit-identical to `zdl train`."""
    http, project = cluster.http, cluster.project
    iters = 5000
    job_id = http.post("/v1/jobs", json={"dataset": "mnist", "training": {"iters": iters}}).json()["id"]
    while (job := http.get(f"/v1/jobs/{job_id}").json())["progress"]["iteration"] < 20:
        time.sleep(0.1)
    assert job["status"] == "running", job
    for service in ("coordinator", "worker", "api"):
        scale = ["--scale", "worker=2"] if service == "worker" else []
        project("up", "-d", "--no-deps", "--force-recreate", *scale, service)
        wait_ready(http, block_workers=2)
    assert wait_finished(http, job_id, timeout=600)["status"] == "succeeded"
    events = http.get(f"/v1/jobs/{job_id}/log").json()["events"]
    resumed = [event for event in events if event["event"] == "resumed"]
    assert resumed and "SIGTERM" in resumed[0]["why"], events
    served = np.load(io.BytesIO(http.get(f"/v1/jobs/{job_id}/weights").content))
    local = np.load(local_training(project, mnist_dir, tmp_path, iters))
    for name in ("W1", "b1", "W2", "b2"):
        assert served[name].tobytes() == local[name].tobytes(), name


def local_training(project: ComposeProject, data_dir: Path, out: Path, iters: int = 200) -> Path:
    """`zdl train` for `iters` iterations (the book's run otherwise): in this process's environment where its
    NumPy and Numba are the image's, the stronger comparison (same bits across installations), else in the
    image."""
    versions = "import json; from importlib import metadata as m\nv = {}\n" \
               "for p in ('numpy', 'numba'):\n    try: v[p] = m.version(p)\n    except m.PackageNotFoundError: pass\n" \
               "print(json.dumps(v))"
    image = json.loads(project.exec("coordinator", "python", "-c", versions))
    here = {name: metadata.version(name) for name in ("numpy", "numba") if _installed(name)}
    args = ["train", "--iters", str(iters), "--no-progress"]
    if image == here:
        subprocess.run([sys.executable, "-c", "import sys; from zdl.cli import main; sys.exit(main())", *args,
                        "--out", str(out)], env={**os.environ, "ZDL_DATA_DIR": str(data_dir)}, check=True,
                       capture_output=True, timeout=600)
    else:
        warnings.warn(f"compared with `zdl train` in the image: its packages {image} are not this venv's {here}",
                      stacklevel=2)
        out.chmod(0o777)  # the image's user writes there
        project("run", "--rm", "--no-deps", "-v", f"{out}:/out", "coordinator", "zdl", *args, "--out", "/out",
                timeout=600)
    return out / "weights.npz"


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def test_parsed_dataset_survives_a_new_container(cluster: Cluster) -> None:
    """The coordinator's parsed MNIST stays in the named volume when its container is replaced, and is used."""
    http, project = cluster.http, cluster.project
    listing = "import json, os; print(json.dumps({e.name: e.stat().st_mtime_ns for e in os.scandir('/cache/parsed')}))"
    on_the_coordinator = {**SMALL_JOB, "gradient": {"method": "backprop"}}  # it loads the data set itself
    assert wait_finished(http, http.post("/v1/jobs", json=on_the_coordinator).json()["id"])["status"] == "succeeded"
    parsed = json.loads(project.exec("coordinator", "python", "-c", listing))
    assert len(parsed) == 4, parsed  # train and test images and labels
    old = project.container_id("coordinator")
    project("up", "-d", "--no-deps", "--force-recreate", "coordinator")
    assert project.container_id("coordinator") != old
    wait_ready(http, block_workers=2)
    assert wait_finished(http, http.post("/v1/jobs", json=on_the_coordinator).json()["id"])["status"] == "succeeded"
    assert json.loads(project.exec("coordinator", "python", "-c", listing)) == parsed
