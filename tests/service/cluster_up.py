"""`zdl cluster up` as an operator runs it: a subprocess, its banner read, its processes found by name under it,
and everything it started stopped at the end (also when the test fails)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ZDL = [sys.executable, "-c", "import sys; from zdl.cli import main; sys.exit(main())"]


@dataclass
class ClusterUp:
    """A running `zdl cluster up`: its process, URL and the API key it printed (or was given)."""

    popen: subprocess.Popen[str]
    url: str
    state_dir: Path

    def children(self) -> dict[str, int]:
        """Its direct children (each the leader of its process group) by name: coordinator, blocks1, api, redis."""
        found = {}
        for task in Path(f"/proc/{self.popen.pid}/task").glob("*"):
            try:
                pids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for pid in pids:
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                found[process_name([a.decode(errors="replace") for a in argv])] = pid
        return found

    def wait_for(self, name: str, other_than: int | None = None, timeout: float = 120) -> int:
        """The pid of the child `name`, once there is one (other than `other_than`)."""
        deadline = time.monotonic() + timeout
        while (pid := self.children().get(name)) is None or pid == other_than:
            if self.popen.poll() is not None:
                raise AssertionError(f"zdl cluster up exited ({self.popen.returncode}): {self.stderr_tail()}")
            assert time.monotonic() < deadline, f"no new {name} after {timeout} s: {self.children()}"
            time.sleep(0.1)
        return pid

    def stderr_tail(self) -> str:
        logs = self.state_dir / "logs"
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(logs.glob("*.log")))


def process_name(argv: list[str]) -> str:
    """A child's name from its command line: the Celery worker's -n NAME@%h, else api or the Redis's log name."""
    if "-n" in argv:
        return argv[argv.index("-n") + 1].split("@")[0]
    if any("uvicorn" in a for a in argv):
        return "api"
    return "redis-steps" if any(a.endswith("redis-steps") for a in argv) else "redis"


@contextmanager
def cluster_up(state_dir: Path, port: int, env: Mapping[str, str], *args: str) -> Iterator[ClusterUp]:
    """Start `zdl cluster up --port PORT --state-dir STATE_DIR ARGS...` and wait for its banner."""
    popen = subprocess.Popen([*ZDL, "cluster", "up", "--port", str(port), "--state-dir", str(state_dir), *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **env}, start_new_session=True)
    started = ClusterUp(popen, f"http://127.0.0.1:{port}", state_dir)
    children: set[int] = set()
    try:
        assert popen.stdout is not None
        banner = popen.stdout.readline()
        assert f"zdl service at {started.url}" in banner, (banner, popen.stderr.read() if popen.stderr else "")
        children = set(started.children().values())
        yield started
    finally:
        children |= set(started.children().values())
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)  # each child leads its own process group
            except (ProcessLookupError, PermissionError):
                pass
