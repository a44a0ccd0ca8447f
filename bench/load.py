"""Load on a local cluster (2 block workers, 2 cores): 20 jobs at once, 100 clients polling, worker memory.

(a) 20 jobs POSTed at the same moment: all succeed, weights bit-identical to local runs, wall time;
(b) 100 clients each polling GET /v1/jobs/{id} every 0.5 s for 30 s while 2 jobs train: latency
    percentiles and errors (target p99 < 50 ms, no errors);
(c) resident memory of each worker (with its pool) after the first jobs and after 20 more (target <= +20%).

    python bench/load.py [--data-dir DIR] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import SecretStr

from worker.cluster.launcher import LocalCluster
from worker.settings import Settings
from zdl.datasets import load_mnist
from zdl.io import load_weights
from zdl.train import TrainConfig, Trainer

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-small"
POLLERS, INTERVAL_S = 100, 0.5


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process group (a Celery worker and its pool), MiB."""
    pages = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            pages += int(fields[21]) if int(fields[2]) == pid else 0
        except (OSError, IndexError, ValueError):
            continue
    return pages * 4096 / 2**20


def body(seed: int, iters: int = 100) -> dict[str, Any]:
    return {"model": {"hidden_size": 10}, "dataset": "mnist",
            "training": {"iters": iters, "batch_size": 50, "learning_rate": 0.1, "seed": seed}}


def wait(api: httpx.Client, job_id: str) -> dict[str, Any]:
    while (job := api.get(f"/v1/jobs/{job_id}").json())["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.05)
    return dict(job)


async def poll_all(url: str, headers: dict[str, str], path: str, seconds: float) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []

    async def poll(client: httpx.AsyncClient, until: float) -> None:
        await asyncio.sleep(random.uniform(0, INTERVAL_S))
        while time.monotonic() < until:
            began = time.perf_counter()
            try:
                response = await client.get(path)
                if response.status_code != 200:
                    errors.append(str(response.status_code))
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            latencies.append(time.perf_counter() - began)
            await asyncio.sleep(max(INTERVAL_S - (time.perf_counter() - began), 0))

    gc.collect()
    gc.freeze()  # the load generator's own collections are not the API's latency
    limits = httpx.Limits(max_connections=POLLERS, max_keepalive_connections=POLLERS)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10, limits=limits) as client:
        until = time.monotonic() + seconds
        await asyncio.gather(*(poll(client, until) for _ in range(POLLERS)))
    return latencies, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST files (default: shared mnist-small)")
    parser.add_argument("--seconds", type=float, default=30.0, help="(b) how long the clients poll (default 30)")
    args = parser.parse_args()
    data_dir = args.data_dir or (DEFAULT_DATA if DEFAULT_DATA.exists() else None)
    if data_dir is None:
        parser.error("no data: pass --data-dir (a directory with the four MNIST files)")
    data = load_mnist(data_dir=data_dir)
    key = secrets.token_urlsafe(16)
    headers = {"Authorization": f"Bearer {key}"}
    with tempfile.TemporaryDirectory(prefix="zdl-load-") as tmp:
        env = {"ZDL_DATA_DIR": str(data_dir), "ZDL_CACHE_DIR": str(Path(tmp) / "cache"), "ZDL_MNIST_MIRRORS": ""}
        settings = Settings(api_keys=SecretStr(key), secret_key=SecretStr(secrets.token_urlsafe(32)),
                            max_active_jobs_per_key=40)
        with LocalCluster(Path(tmp) / "cluster", block_workers=2, port=0, settings=settings, persist=False,
                          env=env) as cluster, httpx.Client(base_url=cluster.url, timeout=60, headers=headers) as api:
            workers = [p for p in (cluster.coordinator, *cluster.blocks) if p is not None]
            for job_id in [api.post("/v1/jobs", json=body(100 + i)).json()["id"] for i in range(2)]:
                wait(api, job_id)
            before = {w.name: tree_rss_mib(w.pid) for w in workers}

            began = time.monotonic()
            with ThreadPoolExecutor(20) as pool:
                ids = list(pool.map(lambda i: api.post("/v1/jobs", json=body(i)).json()["id"], range(20)))
            jobs = [wait(api, job_id) for job_id in ids]
            wall = time.monotonic() - began
            correct = 0
            for job in jobs:
                trainer = Trainer(data, TrainConfig(hidden_size=10, iters=100, batch_size=50,
                                                    seed=job["spec"]["training"]["seed"]))
                trainer.run()
                served = load_weights(api.get(job["links"]["weights"]).content).params
                correct += job["status"] == "succeeded" and all(np.array_equal(served[k], v)
                                                                for k, v in trainer.net.params.items())
            out(f"(a) 20 jobs at once: {correct}/20 succeeded with bit-identical weights, {wall:.1f} s in all")
            after = {w.name: tree_rss_mib(w.pid) for w in workers}
            for name in before:
                out(f"(c) {name}: {before[name]:.1f} MiB after the first 2 jobs, {after[name]:.1f} MiB after 20 "
                    f"more ({after[name] / before[name] - 1:+.1%})")

            training = [api.post("/v1/jobs", json=body(200 + i, iters=100_000)).json()["id"] for i in range(2)]
            latencies, errors = asyncio.run(poll_all(cluster.url, headers, f"/v1/jobs/{training[0]}", args.seconds))
            progress = api.get(f"/v1/jobs/{training[0]}").json()["progress"]
            for job_id in training:
                api.post(f"/v1/jobs/{job_id}/cancel")
            p50, p90, p99 = (1000 * float(np.percentile(latencies, q)) for q in (50, 90, 99))
            out(f"(b) {POLLERS} clients polling every {INTERVAL_S} s for {args.seconds:g} s while 2 jobs train "
                f"({progress['iterations_per_s']:.0f} it/s): {len(latencies)} requests, {len(errors)} errors, "
                f"p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {1000 * max(latencies):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
