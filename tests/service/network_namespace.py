"""A second host on this machine: a network namespace with its own loopback, joined to this host by a veth pair.

The pair's two ends are addressed directly (a /30 of 10.213.0.0/16 that no interface or route here uses), so the
namespace reaches this host's end of the pair and nothing else: no forwarding, no NAT, no firewall rule is added.
The names are this process's own (pid-based), and exactly they are removed afterwards, also when the test fails.
Making one changes the host's network, so it is done only where that is allowed (CI=true, or ZDL_TEST_FIREWALL=1,
as for tests/service/firewall.py), as root, with iproute2's `ip netns`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.service.firewall import ALLOW_VARIABLE

#: 10.213.X.0/30 for some X: private addresses, picked so as not to clash with this host's networks.
SUBNET = "10.213.{}.0"


@dataclass(frozen=True)
class SecondHost:
    """A namespace, its end of the pair and address, and this host's end and address (where it reaches us)."""

    name: str
    link: str
    address: str
    host_link: str
    host_address: str

    @property
    def enter(self) -> list[str]:
        """The command prefix that runs a command on the second host."""
        return ["ip", "netns", "exec", self.name]


def namespace_refusal() -> str | None:
    """Why no network namespace can be made here, or None when one can."""
    ci = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")  # as tests/conftest.py's strict_ci
    if not ci and os.environ.get(ALLOW_VARIABLE, "") != "1":
        return (f"this test adds a network namespace and a veth pair to the host (removed afterwards); set "
                f"{ALLOW_VARIABLE}=1 to allow that here (CI=true allows it)")
    if os.geteuid() != 0:
        return "a network namespace needs root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (Debian: apt-get install iproute2)"
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    if listed.returncode != 0:
        return f"`ip netns` does not work here: {listed.stderr.strip()}"
    return None


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`ip ARGS`; a failure raises with its output unless check is False."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def free_subnet() -> str:
    """The first 10.213.X.0/30, from X = this pid, that no address or route of this host mentions."""
    taken = ip("-4", "-o", "addr", "show").stdout + ip("-4", "route", "show", "table", "all").stdout
    for step in range(256):
        subnet = SUBNET.format((os.getpid() + step) % 256)
        if subnet.rpartition(".")[0] + "." not in taken:
            return subnet
    raise RuntimeError("every 10.213.X.0/30 is in use on this host")


@contextmanager
def second_host() -> Iterator[SecondHost]:
    """A fresh namespace and veth pair; both deleted on exit (the pair first, then the namespace)."""
    tag = f"zdl2h{os.getpid() % 1_000_000}"  # interface names have 15 characters at most
    prefix = free_subnet().rpartition(".")[0]
    host = SecondHost(tag, f"{tag}b", f"{prefix}.2", f"{tag}a", f"{prefix}.1")
    ip("netns", "add", host.name)
    try:
        ip("link", "add", host.host_link, "type", "veth", "peer", "name", host.link, "netns", host.name)
        ip("addr", "add", f"{host.host_address}/30", "dev", host.host_link)
        ip("link", "set", host.host_link, "up")
        ip("-n", host.name, "link", "set", "lo", "up")
        ip("-n", host.name, "addr", "add", f"{host.address}/30", "dev", host.link)
        ip("-n", host.name, "link", "set", host.link, "up")
        yield host
    finally:
        ip("link", "delete", host.host_link, check=False)  # takes its peer with it
        ip("netns", "delete", host.name, check=False)


def leftovers(host: SecondHost) -> list[str]:
    """What is left of `host` on this machine: its namespace, its link (none after `second_host` exits)."""
    left = [f"namespace {host.name}"] if host.name in ip("netns", "list").stdout.split() else []
    return left + ([f"link {host.host_link}"] if ip("link", "show", host.host_link, check=False).returncode == 0
                   else [])
