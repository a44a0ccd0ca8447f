"""A Docker engine for the compose tests: the one that runs, else a `dockerd` started here and stopped after.

Docker's daemon changes the host's network settings when it starts: it turns on IP forwarding and writes its
chains into iptables' filter and nat tables, and it leaves both behind when it stops. `engine()` saves them
first and, after it has stopped a daemon it started, puts them back and checks they are as they were.
Only one compose test at a time uses the engine on a machine (a lock file), so that two test runs neither
rebuild each other's images nor stop a daemon the other still uses.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: Kernel settings dockerd changes (and does not change back).
SYSCTLS = ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables")
FIREWALLS = ("iptables", "ip6tables")


def unavailable_reason() -> str | None:
    """Why no Docker engine can be used here, or None when one can (root, dockerd or a running engine, iptables)."""
    if os.geteuid() != 0:
        return "the compose tests start dockerd and change iptables, which needs root"
    missing = [tool for tool in ("docker", "iptables-save", "iptables-restore") if shutil.which(tool) is None]
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
        firewall = {tool: _normalized(run(f"{tool}-save").stdout) for tool in FIREWALLS if shutil.which(f"{tool}-save")}
        sysctls = {name: path.read_text().strip() for name in SYSCTLS if (path := Path("/proc/sys", name)).exists()}
        return cls(firewall, sysctls)

    def restore(self) -> None:
        """Back to this state: tables saved here are restored, tables made since are emptied and removed."""
        for tool, saved in self.firewall.items():
            nft = "nf_tables" in run(tool, "-V").stdout
            for table, builtin_chains in _tables(run(f"{tool}-save").stdout).items():
                run(tool, "-t", table, "-F")
                run(tool, "-t", table, "-X")
                if table in _tables(saved):
                    continue  # restored below
                if nft:  # a table made since can go; a legacy one stays, empty and open as when it was not loaded
                    run("nft", "delete", "table", "ip6" if tool == "ip6tables" else "ip", table)
                else:
                    for chain in builtin_chains:
                        run(tool, "-t", table, "-P", chain, "ACCEPT")
            if saved:
                run(f"{tool}-restore", input=saved)
        for name, value in self.sysctls.items():
            Path("/proc/sys", name).write_text(value + "\n")


def _normalized(dump: str) -> str:
    """iptables-save output without its dated comments and packet counters, which change by themselves."""
    lines = (re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in dump.splitlines() if not line.startswith("#"))
    return "".join(line + "\n" for line in lines)


def _tables(dump: str) -> dict[str, list[str]]:
    """{table: its built-in chains} of an iptables-save dump (built-in chains have a policy, others "-")."""
    tables: dict[str, list[str]] = {}
    for line in dump.splitlines():
        if line.startswith("*"):
            chains = tables.setdefault(line[1:], [])
        elif line.startswith(":") and line.split()[1] != "-":
            chains.append(line[1:].split()[0])
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
                before.restore()


@contextmanager
def _machine_lock() -> Iterator[None]:
    with open(Path(tempfile.gettempdir()) / "zdl-compose-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
