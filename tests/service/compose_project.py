"""The repository's docker-compose.yml run as a compose project of the tests' own, its images, and its network.

The project has a name of its own (never the user's `zdl` project), and its containers reach nothing outside
this machine: two iptables rules drop whatever its bridge would forward to or from another interface, in a chain
of the test's own that Docker's DOCKER-USER chain jumps to (tests/service/firewall.py), taken out after.
The images are built with the host's network instead, so that pip reaches PyPI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.service.docker_engine import run
from tests.service.firewall import own_chain

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_BASES = ("python:3.11-slim", "redis:7-alpine")
APP_IMAGE = "zdl:latest"


def compose_command(docker: str) -> list[str] | None:
    """`docker compose` (v2) where the CLI has it, else `docker-compose` (1.29), else None."""
    if run(docker, "compose", "version", check=False).returncode == 0:
        return [docker, "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def base_images(docker: str) -> dict[str, str]:
    """{} when the official base images are here or can be pulled; else the variables naming local stand-ins
    (ZDL_PYTHON_IMAGE, ZDL_REDIS_IMAGE), built from Debian packages once and kept."""
    if all(run(docker, "image", "inspect", image, check=False).returncode == 0
           or run(docker, "pull", "-q", image, check=False, timeout=300).returncode == 0 for image in OFFICIAL_BASES):
        return {}
    printed = run(str(REPO / "scripts" / "docker-base-images"), env={**os.environ, "DOCKER": docker}).stdout
    return dict(line.removeprefix("export ").split("=", 1) for line in printed.splitlines() if "=" in line)


def build_app_image(docker: str, bases: dict[str, str]) -> None:
    """The image docker-compose.yml names, from the repository's Dockerfile, with the host's network."""
    python = bases.get("ZDL_PYTHON_IMAGE", OFFICIAL_BASES[0])
    run(docker, "build", "-q", "--network", "host", "--build-arg", f"PYTHON_IMAGE={python}", "-t", APP_IMAGE,
        str(REPO), env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=900)


class ComposeProject:
    """`docker compose -p NAME -f docker-compose.yml ...` with the environment given."""

    def __init__(self, command: list[str], name: str, env: dict[str, str]) -> None:
        self.command, self.name, self.env = command, name, env

    def __call__(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run(*self.command, "-p", self.name, "-f", str(REPO / "docker-compose.yml"), *args, check=check,
                   timeout=timeout, env=self.env, cwd=REPO)

    def exec(self, service: str, *command: str, index: int = 1) -> str:
        """Output of a command in the service's running container (`sh -c` reads the container's variables)."""
        return self("exec", "-T", "--index", str(index), service, *command).stdout

    def container_id(self, service: str) -> str:
        return self("ps", "-q", service).stdout.strip()

    def containers(self, docker: str) -> list[str]:
        """Every container of this project, running or not."""
        label = f"label=com.docker.compose.project={self.name}"
        return run(docker, "ps", "-aq", "--filter", label).stdout.split()

    def bridge(self, docker: str) -> str:
        """The host's interface for the project's network (`br-` and the first 12 digits of its id)."""
        return "br-" + run(docker, "network", "inspect", "-f", "{{.Id}}", f"{self.name}_default").stdout.strip()[:12]


def reaches(project: ComposeProject, host: str, port: int) -> bool:
    """Whether a container on the project's network opens a TCP connection to host:port (within 3 s)."""
    probe = (f"import socket, sys\ntry:\n    socket.create_connection(('{host}', {port}), timeout=3).close()\n"
             "except OSError:\n    sys.exit(1)")
    done = project("run", "--rm", "--no-deps", "--entrypoint", "python", "worker", "-c", probe, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"the probe did not run: {done.stderr}")
    return done.returncode == 0


def wait_ready(http: httpx.Client, block_workers: int, timeout: float = 120) -> None:
    """Until /readyz says ready with `block_workers` block workers listening."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            report = http.get("/readyz").json()
            if report["status"] == "ready" and report["workers"].get("zdl.blocks") == block_workers:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            report = None
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster was not ready in {timeout} s: {report}")
        time.sleep(0.5)


def wait_finished(http: httpx.Client, job_id: str, timeout: float = 300) -> dict[str, Any]:
    """The job's record once it has ended."""
    deadline = time.monotonic() + timeout
    while (job := http.get(f"/v1/jobs/{job_id}").json())["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout} s"
        time.sleep(0.5)
    return job


@contextmanager
def blocked_outside(bridge: str) -> Iterator[None]:
    """Containers on `bridge` reach each other and this host, nothing forwarded beyond it, in either direction."""
    rules = [("-i", bridge, "!", "-o", bridge, "-j", "DROP"), ("-o", bridge, "!", "-i", bridge, "-j", "DROP")]
    with own_chain("DOCKER-USER", rules):
        yield


@contextmanager
def host_outside() -> Iterator[tuple[str, int]]:
    """A TCP listener in a network namespace of its own, routed from the host over a veth pair: to a container it
    is a host beyond this one (its traffic is forwarded), while no packet leaves the machine."""
    tag = f"zdl{os.getpid() % 100000}"
    host_if, address, port = f"{tag}h", "198.18.0.2", 8765  # 198.18.0.0/15: for network tests, routed nowhere
    run("ip", "netns", "add", tag)
    try:
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", f"{tag}n", "netns", tag)
        run("ip", "addr", "add", "198.18.0.1/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "-n", tag, "addr", "add", f"{address}/30", "dev", f"{tag}n")
        run("ip", "-n", tag, "link", "set", f"{tag}n", "up")
        serve = f"import socket\ns = socket.create_server(('{address}', {port}))\nwhile True: s.accept()[0].close()"
        server = subprocess.Popen(["ip", "netns", "exec", tag, sys.executable, "-c", serve])
        try:
            _wait_connectable(address, port)
            yield address, port
        finally:
            server.kill()
            server.wait()
    finally:
        run("ip", "netns", "delete", tag, check=False)  # takes the veth pair with it


def _wait_connectable(host: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
