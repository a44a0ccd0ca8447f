"""A Docker engine for the compose tests: the one that runs, else a `dockerd` started here and stopped after.

Docker's daemon changes the host's network settings when it starts: it turns on IP forwarding (and may set the
FORWARD chain's policy to DROP) and adds its chains and rules to iptables' tables, and it leaves them behind
when it stops. After stopping a daemon it started, `engine()` takes out exactly what Docker added since it
read the host (its DOCKER* chains, and the rules that jump to them or name its bridges), sets back the
policies and kernel settings that changed, and nothing else: it never flushes, saves-and-replays or restores a
table, so rules that others add meanwhile stay. It runs only where the host's network may be touched
(tests/service/firewall.py: CI=true or ZDL_TEST_FIREWALL=1).
Only one compose test at a time uses the engine on a machine (a lock file), so that two test runs neither
rebuild each other's images nor stop a daemon the other still uses.
"""

from __future__ import annotations

import fcntl
import shlex
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.service.firewall import drop_if_empty, network_refusal, saved_tables

#: Kernel settings dockerd changes (and does not change back).
SYSCTLS = ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables")
FIREWALLS = ("iptables", "ip6tables")
#: What marks a rule as Docker's: a jump to one of its chains, or one of its bridges named.
DOCKER_MARKS = ("DOCKER", "docker0", "br-")


def unavailable_reason() -> str | None:
    """Why no Docker engine can be used here, or None when one can (the host's network may be touched, root,
    dockerd or a running engine, iptables)."""
    refusal = network_refusal()
    if refusal is not None:
        return refusal
    missing = [tool for tool in ("docker", "iptables-save") if shutil.which(tool) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (Debian: apt-get install docker.io docker-compose iptables)"
    if not _running() and shutil.which("dockerd") is None:
        return "no Docker engine runs and dockerd is not installed (Debian: apt-get install docker.io)"
    return None


def run(*args: str, check: bool = True, timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """A command's output as text; a failure raises with its output in the message."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@dataclass(frozen=True)
class HostNetwork:
    """The firewall (iptables-save of IPv4 and IPv6, without counters and comments) and the sysctls above."""

    firewall: dict[str, str]
    sysctls: dict[str, str]

    @classmethod
    def read(cls) -> HostNetwork:
        firewall = {tool: saved_tables(tool) for tool in FIREWALLS if shutil.which(f"{tool}-save")}
        sysctls = {name: path.read_text().strip() for name in SYSCTLS if (path := Path("/proc/sys", name)).exists()}
        return cls(firewall, sysctls)

    def undo_docker(self) -> None:
        """Take out what Docker added since this was read (see the module's docstring), and set back the sysctls
        that changed; nothing else is touched."""
        for tool, before in self.firewall.items():
            now = saved_tables(tool)
            for table, (chains, rules) in _parsed(now).items():
                old_chains, old_rules = _parsed(before).get(table, ({}, []))
                docker_chains = [c for c in chains if c not in old_chains and c.startswith("DOCKER")]
                for rule in reversed(list((Counter(rules) - Counter(old_rules)).elements())):
                    chain, spec = rule.split(" ", 1)
                    if chain not in docker_chains and any(mark in spec for mark in DOCKER_MARKS):
                        run(tool, "-w", "-t", table, "-D", chain, *shlex.split(spec))
                for action in ("-F", "-X"):  # all flushed before any is deleted: they jump to each other
                    for chain in docker_chains:
                        run(tool, "-w", "-t", table, action, chain)
                for chain, policy in old_chains.items():
                    if policy != "-" and chains.get(chain) not in (None, policy):
                        run(tool, "-w", "-t", table, "-P", chain, policy)
                if table not in _parsed(before):
                    drop_if_empty(table, tool)
        for name, value in self.sysctls.items():
            path = Path("/proc/sys", name)
            if path.read_text().strip() != value:
                path.write_text(value + "\n")


def _parsed(dump: str) -> dict[str, tuple[dict[str, str], list[str]]]:
    """{table: ({chain: its policy, "-" for a chain of its own}, ["CHAIN rule-spec", ...])} of an iptables-save
    dump."""
    tables: dict[str, tuple[dict[str, str], list[str]]] = {}
    for line in dump.splitlines():
        if line.startswith("*"):
            chains, rules = tables.setdefault(line[1:], ({}, []))
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            chains[name] = policy
        elif line.startswith("-A "):
            rules.append(line[3:])
    return tables


def _running(docker: str = "docker") -> bool:
    try:
        return run(docker, "info", "--format", "{{.ServerVersion}}", check=False, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class Engine:
    """The Docker CLI to use, and what the engine's start changed."""

    docker: str
    started_here: bool
    before: HostNetwork


@contextmanager
def engine(log_dir: Path) -> Iterator[Engine]:
    """A running Docker engine; one started here is stopped at the end and the host network put back."""
    with _machine_lock():
        before = HostNetwork.read()
        docker0_existed = Path("/sys/class/net/docker0").exists()
        daemon = None
        if not _running():
            log = (log_dir / "dockerd.log").open("w")
            daemon = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + 60
            while not _running():
                if daemon.poll() is not None or time.monotonic() > deadline:
                    daemon.kill()
                    raise RuntimeError(f"dockerd did not start: see {log_dir / 'dockerd.log'}")
                time.sleep(0.5)
        try:
            yield Engine("docker", daemon is not None, before)
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(timeout=60)
                if not docker0_existed:
                    run("ip", "link", "delete", "docker0", check=False)
                before.undo_docker()


@contextmanager
def _machine_lock() -> Iterator[None]:
    with open(Path(tempfile.gettempdir()) / "zdl-compose-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
