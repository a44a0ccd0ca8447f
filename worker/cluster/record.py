"""The record of a running `zdl cluster up`: the processes it started and the ports they hold.

Kept as `processes.json` in the state dir, so that `zdl cluster down` stops every one of them even when the
`zdl cluster up` that started them was killed outright, and `zdl cluster status` can say what runs. A pid
is recorded with its start time (clock ticks after boot, from /proc): a pid the system has since reused
for another program never matches, so `down` never signals a stranger.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from worker.cluster.processes import Managed, port_open
from zdl.io import atomic_write_bytes

RECORD_FILE = "processes.json"


@dataclass(frozen=True)
class Recorded:
    """One process of the cluster: its name, pid and start time; each leads its own process group."""

    name: str
    pid: int
    start: int | None

    def alive(self) -> bool:
        """Running (not a zombie), and the same process that was recorded."""
        try:
            state, _, start = _stat(self.pid)
        except (OSError, IndexError, ValueError):
            return False
        return state != "Z" and (self.start is None or start == self.start)

    def group(self) -> list[int]:
        """The running processes of its process group (its pool's children too, even once the leader died);
        none if another program now holds its pid."""
        try:
            state, _, start = _stat(self.pid)
            if self.start is not None and start != self.start:
                return []
        except (OSError, IndexError, ValueError):
            pass
        members = []
        for entry in Path("/proc").iterdir():
            try:
                state, group, start = _stat(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
            if group == self.pid and state != "Z" and (self.start is None or start >= self.start):
                members.append(int(entry.name))
        return members


def _stat(pid: int) -> tuple[str, int, int]:
    """(state letter, process group, start time in clock ticks) of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[2]), int(fields[19])


def recorded(name: str, pid: int) -> Recorded:
    try:
        start: int | None = _stat(pid)[2]
    except (OSError, IndexError, ValueError):
        start = None
    return Recorded(name, pid, start)


@dataclass
class ClusterRecord:
    """The supervisor (the `zdl cluster up` process), the processes it started, its URL and ports.
    `ready` is False while it is still starting."""

    supervisor: Recorded
    url: str
    ports: list[int]
    processes: list[Recorded]
    ready: bool = False

    @classmethod
    def of(cls, url: str, ports: list[int], managed: list[Managed], ready: bool) -> ClusterRecord:
        return cls(recorded("zdl cluster up", os.getpid()), url, ports,
                   [recorded(m.name, m.pid) for m in managed], ready)

    def write(self, state_dir: Path) -> Path:
        return atomic_write_bytes(state_dir / RECORD_FILE, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def read(cls, state_dir: Path) -> ClusterRecord | None:
        """The record in state_dir, or None if there is none (or it is unreadable)."""
        try:
            data: dict[str, Any] = json.loads((state_dir / RECORD_FILE).read_text())
            return cls(Recorded(**data["supervisor"]), data["url"], list(data["ports"]),
                       [Recorded(**p) for p in data["processes"]], bool(data["ready"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def alive(self) -> list[Recorded]:
        """Those of the supervisor and its processes still running."""
        return [p for p in (self.supervisor, *self.processes) if p.alive()]


def remove_record(state_dir: Path) -> None:
    (state_dir / RECORD_FILE).unlink(missing_ok=True)


def stop_cluster(record: ClusterRecord, timeout_s: float = 30.0) -> list[Recorded]:
    """Stop a recorded cluster: SIGTERM to its supervisor (which stops its processes in order), then SIGTERM and
    at last SIGKILL to each process group still running; returns what was running. Raises RuntimeError if a
    process or a port outlives it all."""
    running = record.alive()
    if record.supervisor.alive():
        _signal(record.supervisor.pid, signal.SIGTERM, group=False)
        _wait_gone([record.supervisor], timeout_s)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = [p for p in record.processes if p.group()]
        for process in left:
            _signal(process.pid, sig, group=True)
        _wait_gone(left, 10.0)
    left = [p for p in record.processes if p.group()] + [record.supervisor] * record.supervisor.alive()
    if left:
        raise RuntimeError(f"could not stop {', '.join(f'{p.name} (pid {p.pid})' for p in left)}")
    deadline = time.monotonic() + 10.0
    while (listening := [port for port in record.ports if port_open(port)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if listening:
        raise RuntimeError(f"the cluster's processes are gone but port {listening[0]} still answers")
    return running


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(processes: list[Recorded], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(p.alive() or p.group() for p in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
