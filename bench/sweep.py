"""Benchmark of sweeps (issue 14): the same sweep on `zdl cluster up --workers 1` and `--workers 2`.

The sweep is 8 numerical jobs of the book's network (784-50-10, batch 100, real MNIST): 4 learning rates x 2
seeds, 500 iterations each. Its wall time is the service's own clock, from the sweep's creation to the end of
its last job; each job's mean fan-out overhead per step and the share of its time spent in its gradient say
where the rest goes. With two workers the jobs should run side by side, one block group each (target: at least
1.8x faster on 2 cores). The weights of each setting must be bit-identical on both clusters.

Each size is a fresh `zdl cluster up` (the real command, a subprocess), warmed up by one small job first;
with --repeats, the sizes alternate (1, 2, 2, 1, ...) and medians are printed.

    python bench/sweep.py [--data-dir DIR] [--iters 500] [--repeats 1] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from worker.cluster.processes import free_port
from zdl.client import Client

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-small"
GRID = {"learning_rate": [0.01, 0.1, 1.0, 10.0], "seed": [0, 1]}


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def cluster_up(workers: int, data_dir: Path, work: Path) -> Iterator[Client]:
    """`zdl cluster up --workers N` in a subprocess, a client of it once it is ready; SIGTERM at the end."""
    port, key = free_port(), secrets.token_urlsafe(16)
    env = {**os.environ, "ZDL_API_KEYS": key, "ZDL_DATA_DIR": str(data_dir), "ZDL_CACHE_DIR": str(work / "cache"),
           "ZDL_MNIST_MIRRORS": ""}
    log = open(work / f"cluster-{workers}.log", "ab")  # closed below, after the process
    process = subprocess.Popen([sys.executable, "-c", "import sys; from zdl.cli import main; sys.exit(main())",
                                "cluster", "up", "--workers", str(workers), "--port", str(port), "--state-dir",
                                str(work / f"state-{workers}")], stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not ready(url, workers):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"zdl cluster up --workers {workers} did not become ready; see {log.name}")
            time.sleep(0.5)
        with Client(url, key) as client:
            yield client
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def ready(url: str, workers: int) -> bool:
    try:
        report = httpx.get(f"{url}/readyz", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return False
    blocks = [n for queue, n in (report.get("workers") or {}).items() if "block" in queue]
    return bool(blocks) and blocks[0] >= workers


def timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_sweep(client: Client, iters: int) -> dict[str, Any]:
    """The sweep's wall time (service clock), its jobs' mean elapsed time, and each setting's weights."""
    client.submit(iters=20, hidden_size=8).wait(progress=False)  # warm-up: kernels loaded, loops started
    sweep = client.sweep(GRID, iters=iters, name=f"bench {iters} iterations").wait(progress=False)
    jobs = sweep.jobs
    failed = [job for job in jobs if job.record["status"] != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs did not succeed: {failed[0].record.get('error')}")
    created = timestamp(sweep.record["created_at"])
    ended = max(timestamp(job.record["timings"]["finished_at"]) for job in jobs)
    setting = {job.id: (job.spec["training"]["learning_rate"], job.spec["training"]["seed"]) for job in jobs}
    return {"wall_s": ended - created, "job_s": statistics.mean(job.record["progress"]["elapsed_s"] for job in jobs),
            "overhead_ms": statistics.mean(job.record["timings"]["fanout_overhead_ms"] for job in jobs),
            "gradient_share": statistics.mean(job.record["timings"]["gradient_s"] / job.record["progress"]["elapsed_s"]
                                              for job in jobs),
            "test_acc": {setting[job.id]: job.record["latest"]["test_acc"] for job in jobs},
            "weights": {setting[job.id]: client.connection.request("GET", f"/v1/jobs/{job.id}/weights").content
                        for job in jobs}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST files (default: shared mnist-small)")
    parser.add_argument("--iters", type=int, default=500, help="iterations of each job (default 500)")
    parser.add_argument("--repeats", type=int, default=1, help="sweeps per cluster size (default 1)")
    parser.add_argument("--workers", default="1,2", help="cluster sizes to compare (default 1,2)")
    args = parser.parse_args()
    data_dir = args.data_dir or (DEFAULT_DATA if DEFAULT_DATA.exists() else None)
    if data_dir is None:
        parser.error("no data: pass --data-dir (a directory with the four MNIST files)")
    sizes = [int(n) for n in args.workers.split(",")]
    out(f"zdl sweep benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; data {data_dir}; 8 jobs (learning rate x seed), {args.iters} iterations each")
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory(prefix="zdl-bench-sweep-") as tmp:
        for repeat in range(args.repeats):
            for n in sizes if repeat % 2 == 0 else sizes[::-1]:
                with cluster_up(n, data_dir, Path(tmp)) as client:
                    result = run_sweep(client, args.iters)
                results[n].append(result)
                out(f"  --workers {n}: sweep {result['wall_s']:.1f} s, mean job {result['job_s']:.1f} s, fan-out "
                    f"overhead {result['overhead_ms']:.1f} ms a step, {100 * result['gradient_share']:.0f}% of a job's "
                    "time in its gradient")
    base = sizes[0]
    reference = results[base][0]["weights"]
    same = all(r["weights"] == reference for runs in results.values() for r in runs)
    out()
    out("| cluster | sweep wall time (median) | mean job time | fan-out overhead a step | speed-up |")
    out("|---|---:|---:|---:|---:|")
    medians = {n: statistics.median(r["wall_s"] for r in runs) for n, runs in results.items()}
    for n, runs in results.items():
        out(f"| `zdl cluster up --workers {n}` | {medians[n]:.1f} s | "
            f"{statistics.median(r['job_s'] for r in runs):.1f} s | "
            f"{statistics.median(r['overhead_ms'] for r in runs):.1f} ms | {medians[base] / medians[n]:.2f}x |")
    out(f"\nweights of every setting bit-identical on every cluster: {'yes' if same else 'NO'}")
    accuracies = ", ".join(f"lr {lr:g} seed {seed}: {acc:.4f}" for (lr, seed), acc
                           in sorted(results[base][0]["test_acc"].items()))
    out(f"test accuracy: {accuracies}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
