"""A second host, for real: workers on another machine reach Redis only over TLS, with the bits of `zdl train`.

The first host (this one) runs the service's three Redis servers with the TLS options of docs/operations.md's compose
override and no plain port at all (certificates made here with openssl), and the API. The second host is a network
namespace (tests/service/network_namespace.py): its own loopback, and a veth pair to this host, nothing else. On it
run the document's own blocks for another machine, with this test's addresses, ports and files in place of the
document's, in one shell session: "Workers on another machine" (a block worker and a coordinator, through
`rediss://` URLs that name the CA), then "Check that only TLS reaches Redis" in their environment; a plain-text PING
of this test's own gets no answer either. The book's run, submitted over HTTP, ends with weights bit-identical to
`zdl train` of the same run here.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service.cluster_up import ZDL
from tests.service.doc_shell import run, stop_group
from tests.service.network_namespace import SecondHost, leftovers, namespace_refusal, second_host
from tests.service.tls_redis import make_certificates, rediss_url, start_tls_redis, tls_tools_missing
from worker.cluster import processes
from worker.cluster.launcher import write_secret
from worker.cluster.redis_auth import acl_file_text
from worker.settings import Settings
from zdl.io import load_weights

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

KEY = "second-host-key-6e1b"
#: The book's run (784-50-10, batch 100, lr 0.1, numerical gradient), shortened to a few hundred iterations.
BOOK = ["--hidden", "50", "--batch-size", "100", "--lr", "0.1", "--seed", "0", "--iters", "300",
        "--gradient", "numerical", "--no-progress"]
#: The override's servers and their published TLS ports in the document.
SERVERS = {"redis": "6380", "redis-steps": "6381", "redis-broker": "6382"}
DOC_HOST = "zdl-main.example.edu"
#: Run on the second host: a plain-text PING to each port, and what came back (nothing, from a TLS-only server).
PLAIN_PROBE = """
import socket, sys
for port in sys.argv[2:]:
    with socket.create_connection((sys.argv[1], int(port)), timeout=10) as sock:
        sock.sendall(b"PING\\r\\n")
        sock.settimeout(10)
        try:
            reply = sock.recv(100)
        except ConnectionResetError:
            reply = b""
        print(port, reply)
"""


@dataclass
class FirstHost:
    """The API's URL, the TLS ports of the three servers by service, the Redis password and the certificates."""

    url: str
    ports: dict[str, int]
    password: str
    tls_dir: Path
    procs: list[processes.Managed]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail(1500)}" for p in self.procs)


@contextmanager
def first_host(root: Path, host: SecondHost, env: dict[str, str]) -> Iterator[FirstHost]:
    """The three Redis servers, TLS only, on 127.0.0.1 and this host's end of the pair; the API on 127.0.0.1."""
    tls_dir = make_certificates(root / "tls", ["127.0.0.1", host.host_address])
    password, ports = secrets.token_hex(16), {service: processes.free_port() for service in SERVERS}
    acl_file = write_secret(root / "redis-users.acl", acl_file_text(password))
    started: list[processes.Managed] = []
    try:
        for service, port in ports.items():
            started.append(start_tls_redis(service, port, tls_dir, root, acl_file, ["127.0.0.1", host.host_address]))
        urls = {s: rediss_url(password, "127.0.0.1", port, tls_dir / "ca.crt") for s, port in ports.items()}
        for service, url in urls.items():
            processes.wait_until(lambda url=url: processes.redis_ready(url), 60, service, started)  # type: ignore[misc]
        settings = Settings(redis_url=urls["redis"], step_redis_url=urls["redis-steps"],
                            broker_url=urls["redis-broker"], api_keys=KEY, secret_key=secrets.token_hex(16))
        api_port = processes.free_port()
        started.append(processes.start_api(api_port, root / "logs", {**env, **settings.to_env()}))
        processes.wait_until(lambda: processes.port_open(api_port), 60, "the API", started)
        yield FirstHost(f"http://127.0.0.1:{api_port}", ports, password, tls_dir, started)
    finally:
        processes.stop(started)


@contextmanager
def operator_there(root: Path, host: SecondHost, first: FirstHost, mnist_dir: Path) -> Iterator[dict[str, object]]:
    """The operator's shell on the second host: no ZDL_* of this one, the Redis password, its own cache; the
    document's host, ports and files replaced by the first host's. Every process group it starts is stopped."""
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZDL_")}
    env |= {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "ZDL_REDIS_PASSWORD": first.password,
            "ZDL_CACHE_DIR": str(root / "cache")}
    substitute = {f"{DOC_HOST}:{doc_port}": f"{host.host_address}:{first.ports[service]}"
                  for service, doc_port in SERVERS.items()}
    substitute |= {DOC_HOST: host.host_address, " ".join(SERVERS.values()): " ".join(map(str, first.ports.values())),
                   "/srv/zdl-tls": str(first.tls_dir), "/srv/zdl-data": str(mnist_dir)}
    shell: dict[str, object] = {"env": env, "cwd": root, "substitute": substitute, "groups": [], "prefix": host.enter,
                                "session": []}
    try:
        yield shell
    finally:
        for group in shell["groups"]:  # type: ignore[attr-defined]
            stop_group(group)


def plain_replies(host: SecondHost, first: FirstHost) -> dict[str, str]:
    """What each Redis port answers a plain-text PING from the second host, by port."""
    done = subprocess.run([*host.enter, sys.executable, "-c", PLAIN_PROBE, host.host_address,
                           *map(str, first.ports.values())], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (iproute2's `ss`)."""
    listed = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, timeout=30, check=True).stdout
    return {int(line.split()[3].rpartition(":")[2]) for line in listed.splitlines() if f"pid={pid}," in line}


def wait_ready(first: FirstHost, timeout: float = 120) -> None:
    """Until /readyz says 200: both Redis servers answer the API and a worker listens on each queue."""
    deadline = time.monotonic() + timeout
    while (ready := httpx.get(f"{first.url}/readyz", timeout=10)).status_code != 200:
        assert time.monotonic() < deadline, f"not ready after {timeout} s: {ready.text}\n{first.logs()}"
        time.sleep(0.5)


def test_a_second_host_reaches_redis_only_over_tls_and_keeps_the_bits(tmp_path: Path, mnist_dir: Path) -> None:
    for refusal in (namespace_refusal(), tls_tools_missing()):
        if refusal is not None:
            pytest.skip(refusal)
    env = {"ZDL_DATA_DIR": str(mnist_dir), "ZDL_CACHE_DIR": str(tmp_path / "cache")}
    with ExitStack() as stack:
        local = subprocess.Popen([*ZDL, "train", *BOOK, "--out", str(tmp_path / "local")], env={**os.environ, **env},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stack.push(lambda failed, *_: failed is not None and local.kill())  # on success it is waited for below
        host = stack.enter_context(second_host())
        first = stack.enter_context(first_host(tmp_path / "first", host, env))
        operator = stack.enter_context(operator_there(tmp_path / "second", host, first, mnist_dir))

        run(operator, "Workers on another machine")
        checked = run(operator, "Check that only TLS reaches Redis")  # in the workers' environment
        assert checked.strip() == "[True, True, True]", checked
        assert plain_replies(host, first) == {str(port): "b''" for port in first.ports.values()}
        servers = {p.name: listening_ports(p.pid) for p in first.procs if p.name in SERVERS}
        assert servers == {service: {port} for service, port in first.ports.items()}  # no plain port at all
        wait_ready(first)
        submit = subprocess.run([*ZDL, "submit", "--url", first.url, "--api-key", KEY, *BOOK,
                                 "--out", str(tmp_path / "service")], env={**os.environ, **env},
                                capture_output=True, text=True, timeout=400)
        workers = (tmp_path / "second" / "Workers on another machine.out").read_text(errors="replace")[-3000:]
        assert submit.returncode == 0, f"{submit.stdout}\n{submit.stderr}\n{first.logs()}\n--- workers\n{workers}"
    assert leftovers(host) == [], "the second host was not removed"
    assert local.wait(timeout=300) == 0, local.stderr.read() if local.stderr else ""
    served, trained = (load_weights(tmp_path / d / "weights.npz").params for d in ("service", "local"))
    for name, array in trained.items():
        assert served[name].dtype == array.dtype and np.array_equal(served[name], array), name
