"""`zdl cluster up`, `zdl cluster status` and `zdl cluster down`: a local cluster that finishes what it starts.

`up` keeps everything in one state dir (zdl.paths says which): the Redis data, the logs, the API key (made
once, kept across restarts, so a restarted cluster shows the earlier jobs) and the URL, where `zdl.client`
finds them; and the record of the processes it started (worker/cluster/record.py), which `down` stops.
`up --detach` starts the same command in the background and returns once the API answers.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import httpx
from pydantic import SecretStr

from worker.cluster import backup_cli, processes
from worker.cluster.launcher import SECRET_KEY_FILE, LocalCluster, redacted, stored_secret, write_secret
from worker.cluster.record import ClusterRecord, remove_record, stop_cluster
from worker.cluster.supervisor import GaveUp, Supervisor
from worker.settings import Settings
from zdl.cli import UserError
from zdl.paths import API_KEY_FILE, URL_FILE, default_state_dir

#: How long `up --detach` waits for the cluster to answer (a first start converts nothing; a restart replays
#: the append-only file, a few seconds for thousands of jobs).
DETACHED_START_S = 180.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Entry point (group `zdl.commands`): adds `zdl cluster up`, `zdl cluster status`, `zdl cluster down`."""
    cluster = subparsers.add_parser("cluster", help="run the training service on this machine (up, status, down)")
    actions = cluster.add_subparsers(dest="cluster_command", required=True)
    up = actions.add_parser("up", help="start Redis, workers and the API; Ctrl-C (or `zdl cluster down`) stops them")
    up.add_argument("--workers", type=int, default=2, help="block workers (default 2)")
    up.add_argument("--threads", type=int, default=None,
                    help="cores each block worker uses on one block group (default $ZDL_BLOCK_THREADS or 1; "
                         "workers x threads = the machine's cores is best)")
    up.add_argument("--coordinators", type=int, default=None,
                    help="jobs that run at once (default $ZDL_COORDINATORS or 4); more wait in the fair queue")
    up.add_argument("--port", type=int, default=8000, help="API port on 127.0.0.1 (default 8000; 0: any free)")
    up.add_argument("--redis-url", default=None, help="use this Redis instead of starting one")
    up.add_argument("--log-dir", type=Path, default=None,
                    help="each process's JSON-lines log (rotating <name>.jsonl) and output (default <state dir>/logs)")
    up.add_argument("--detach", action="store_true",
                    help="run in the background; return once the API answers (`zdl cluster down` stops it)")
    add_state_dir_argument(up)
    up.set_defaults(func=run_up)
    status = actions.add_parser("status", help="whether a cluster runs from the state dir: its URL, key file, "
                                               "processes and workers (exit code 1 if none runs)")
    add_state_dir_argument(status)
    status.set_defaults(func=run_status)
    down = actions.add_parser("down", help="stop the cluster started from the state dir: every process it started")
    add_state_dir_argument(down)
    down.set_defaults(func=run_down)
    backup_cli.register(subparsers)


def add_state_dir_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, default=None,
                   help="Redis data, logs, the API key and the URL (default $ZDL_STATE_DIR, else the .zdl/cluster "
                        "of this checkout if it has one, else the user state dir)")


def state_dir_of(args: argparse.Namespace) -> Path:
    return Path(args.state_dir or default_state_dir()).absolute()


def running_record(state_dir: Path) -> ClusterRecord | None:
    """The record of a cluster whose `zdl cluster up` still runs from state_dir, else None."""
    record = ClusterRecord.read(state_dir)
    return record if record is not None and record.supervisor.alive() else None


def check_startable(args: argparse.Namespace, state_dir: Path) -> None:
    """UserError if this state dir's cluster already runs or the port is taken (before starting anything)."""
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.coordinators is not None and args.coordinators < 1:
        raise UserError(f"--coordinators must be at least 1, got {args.coordinators}")
    if (record := running_record(state_dir)) is not None:
        raise UserError(f"a zdl cluster from {state_dir} already runs at {record.url} (pid {record.supervisor.pid}); "
                        "`zdl cluster down` stops it")
    if args.port and processes.port_open(args.port):
        raise UserError(f"port {args.port} is already in use; choose another with --port (0: any free port)")


def run_up(args: argparse.Namespace) -> int:
    state_dir = state_dir_of(args)
    check_startable(args, state_dir)
    if args.detach:
        return start_detached(args, state_dir)
    secret = os.environ.get("ZDL_SECRET_KEY") or stored_secret(state_dir, SECRET_KEY_FILE)
    log_dir = (args.log_dir or state_dir / "logs").resolve()
    chosen = {"redis_url": args.redis_url, "block_threads": args.threads, "coordinators": args.coordinators,
              "log_dir": str(log_dir)}
    settings = Settings(secret_key=SecretStr(secret), **{k: v for k, v in chosen.items() if v is not None})
    key_path = None
    if not settings.api_key_list:  # never run without a key: this state dir's own, made once and kept
        key_path = state_dir / API_KEY_FILE
        # the API names it `admin`: this state dir's operator key, kept across restarts
        settings = settings.model_copy(update={"admin_keys": SecretStr(stored_secret(state_dir, API_KEY_FILE))})
    cluster = LocalCluster(state_dir, block_workers=args.workers, port=args.port, settings=settings,
                           start_redis=args.redis_url is None)
    stop = threading.Event()
    started = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if not started:  # still starting: unwind start(), which stops what it started
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ports = [p for p in (cluster.port, cluster.redis_port, cluster.step_redis_port, cluster.broker_redis_port) if p]
    ClusterRecord.of(cluster.url, ports, [], ready=False).write(state_dir)
    try:
        try:
            cluster.start()
        except (RuntimeError, TimeoutError) as exc:  # a process died or hung while starting: its log says why
            raise UserError(f"{str(exc).splitlines()[0]} (logs in {cluster.log_dir})") from None
        started = True
        write_secret(state_dir / URL_FILE, cluster.url + "\n")
        ClusterRecord.of(cluster.url, ports, cluster.processes, ready=True).write(state_dir)
        announce(cluster, args.workers, key_path)
        return supervise(cluster, stop, lambda: ClusterRecord.of(cluster.url, ports, cluster.processes,
                                                                  ready=True).write(state_dir))
    finally:
        cluster.stop()
        remove_record(state_dir)


def announce(cluster: LocalCluster, workers: int, key_path: Path | None) -> None:
    step_url = cluster.settings.step_redis_url
    step_note = f" (step data: {redacted(step_url)})" if step_url else ""
    say(f"zdl service at {cluster.url} (docs {cluster.url}/docs), {workers} block workers, "
        f"Redis {redacted(cluster.settings.redis_url)}{step_note}; logs in {cluster.log_dir}. Ctrl-C stops it.")
    if key_path is not None:
        say(f"API key in {key_path} (kept across restarts; ZDL_API_KEYS chooses your own), where `zdl submit` "
            "and zdl.client.Client() find it")


def supervise(cluster: LocalCluster, stop: threading.Event, record: Callable[[], object]) -> int:
    """Watch the cluster until a signal asks it to stop (0): a worker or the API that exits is started again
    under its name (with backoff, worker/cluster/supervisor.py); 1 when one keeps failing at start or a Redis
    server exits."""
    supervisor = Supervisor(lambda: cluster.processes, cluster.restart_process,
                            critical=lambda proc: proc in (cluster.redis, cluster.step_redis, cluster.broker_redis))
    while not stop.wait(0.5):
        try:
            for name in supervisor.check():
                sys.stderr.write(f"zdl cluster: {name} exited; started it again\n")
                record()  # `zdl cluster down` stops the new process too
        except GaveUp as exc:
            sys.stderr.write(f"zdl cluster: {exc}\nstopping.\n")
            return 1
    say("stopping ...")
    return 0


def start_detached(args: argparse.Namespace, state_dir: Path) -> int:
    """`zdl cluster up` without --detach in a session of its own, output to <state_dir>/logs/cluster.log; returns
    once it has started and its API answers, or UserError with the line its log ends with."""
    log_path = state_dir / "logs" / "cluster.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "zdl.cli", "cluster", "up", "--workers", str(args.workers), "--port",
               str(args.port), "--state-dir", str(state_dir)]
    command += ["--threads", str(args.threads)] if args.threads is not None else []
    command += ["--coordinators", str(args.coordinators)] if args.coordinators is not None else []
    command += ["--redis-url", args.redis_url] if args.redis_url else []
    command += ["--log-dir", str(args.log_dir.resolve())] if args.log_dir else []
    with open(log_path, "ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=state_dir)
    deadline = time.monotonic() + DETACHED_START_S
    while (record := ClusterRecord.read(state_dir)) is None or record.supervisor.pid != child.pid or not record.ready:
        if child.poll() is not None:
            raise UserError(f"the cluster did not start: {last_error(log_path)} (log: {log_path})")
        if time.monotonic() > deadline:
            os.killpg(child.pid, signal.SIGTERM)
            raise UserError(f"the cluster did not start in {DETACHED_START_S:.0f} s (log: {log_path})")
        time.sleep(0.1)
    wait_for_api(record.url, deadline)
    key_path = state_dir / API_KEY_FILE
    key_note = key_path if key_path.exists() else "$ZDL_API_KEYS"
    say(f"zdl service at {record.url} (pid {child.pid}); API key in {key_note}; logs in {state_dir / 'logs'}. "
        "`zdl cluster down` stops it.")
    return 0


def wait_for_api(url: str, deadline: float) -> None:
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise UserError(f"the cluster started but its API at {url} does not answer")
        time.sleep(0.1)


def last_error(log_path: Path) -> str:
    """The line a failed `zdl cluster up` ended its log with (its one-line error), without the prefix."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("zdl: error: ")]
    return (errors or lines or ["(its log is empty)"])[-1].removeprefix("zdl: error: ")


def run_status(args: argparse.Namespace) -> int:
    state_dir = state_dir_of(args)
    record = ClusterRecord.read(state_dir)
    if record is None or not record.alive():
        raise UserError(f"no zdl cluster runs from {state_dir}; `zdl cluster up` starts one")
    if not record.supervisor.alive():
        raise UserError(f"the `zdl cluster up` of {state_dir} is gone but {len(record.alive())} of its processes "
                        "still run; `zdl cluster down` stops them")
    say(f"zdl cluster at {record.url} (pid {record.supervisor.pid}), state dir {state_dir}")
    if (state_dir / API_KEY_FILE).exists():
        say(f"API key in {state_dir / API_KEY_FILE}")
    say(f"processes: {len(record.alive()) - 1} of {len(record.processes)} running"
        + ("" if record.ready else " (still starting)"))
    try:
        report = httpx.get(f"{record.url}/readyz", timeout=5.0).json()
        workers = ", ".join(f"{queue} {count}" for queue, count in report.get("workers", {}).items())
        say(f"service: {report.get('status')}; live workers: {workers or 'none'}")
    except (httpx.TransportError, ValueError) as exc:
        say(f"service: not answering ({exc})")
    return 0


def run_down(args: argparse.Namespace) -> int:
    state_dir = state_dir_of(args)
    record = ClusterRecord.read(state_dir)
    if record is None or not record.alive():
        remove_record(state_dir)
        say(f"no zdl cluster runs from {state_dir}; nothing to stop")
        return 0
    try:
        stopped = stop_cluster(record)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    remove_record(state_dir)
    say(f"stopped the zdl cluster at {record.url}: {len(stopped)} processes, ports {', '.join(map(str, record.ports))}"
        " closed")
    return 0


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
