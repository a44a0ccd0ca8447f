"""Two tenants on one cluster (issue 11): does a heavy key starve a light one, and does storage stay bounded?

On a local cluster (2 Redis, 1 coordinator worker with 4 slots, 2 block workers, the API) with the service's
default limits:
(a) key B's book run (784-50-10, 2,000 iterations, numerical) alone: its wall time;
(b) key A submits the heaviest job the limits admit plus its whole running quota (and more, queued); then key
    B submits the same book run: B's wait until its first iteration (target <= 5 s) and its wall time
    against (a) (target <= 2.5x);
(c) peak resident memory of every worker process (target: block workers under ZDL_WORKER_MEMORY_MB);
(d) key C submits 300 small jobs one after another: the main Redis's used memory as they finish (target:
    flat once C's stored-jobs quota is reached: later submissions are refused with 429).

    python bench/tenants.py [--data-dir DIR] [--iters 2000] [--small-jobs 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from pydantic import SecretStr

from worker.cluster.launcher import LocalCluster
from worker.settings import Settings

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-small"
FINISHED = ("succeeded", "failed", "cancelled")


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def job_body(iters: int, hidden: int = 50, batch: int = 100, method: str = "numerical") -> dict[str, Any]:
    return {"model": {"hidden_size": hidden}, "dataset": "mnist",
            "training": {"iters": iters, "batch_size": batch, "seed": 0}, "gradient": {"method": method}}


def wait(api: httpx.Client, job_id: str, until: tuple[str, ...] = FINISHED, at_iteration: int | None = None) -> dict:
    while True:
        job = api.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["status"] in until or (at_iteration is not None and job["progress"]["iteration"] >= at_iteration):
            return job
        time.sleep(0.05)


def timed_run(api: httpx.Client, body: dict[str, Any]) -> tuple[float, float, dict]:
    """(seconds until the first iteration is recorded, seconds until the end, the final job)."""
    began = time.monotonic()
    job = api.post("/v1/jobs", json=body).raise_for_status().json()
    wait(api, job["id"], at_iteration=1)
    first = time.monotonic() - began
    job = wait(api, job["id"])
    return first, time.monotonic() - began, job


class PeakMemory:
    """Samples the resident memory of processes (and their children) every 0.2 s; keeps each one's peak."""

    def __init__(self, named: dict[str, int]) -> None:
        self.named, self.peak_mb = named, dict.fromkeys(named, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for name, pid in self.named.items():
                self.peak_mb[name] = max(self.peak_mb[name], tree_rss_mb(pid))

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def tree_rss_mb(pid: int) -> float:
    """The largest resident size among a process and its children (a prefork pool's processes), in MB."""
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return 0.0
    sizes = []
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        sizes += [int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")]
    return max(sizes, default=0.0)


def redis_used_mb(url: str) -> float:
    with redis.Redis.from_url(url) as client:
        return float(client.info("memory")["used_memory"]) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ZDL_DATA_DIR", DEFAULT_DATA)))
    parser.add_argument("--iters", type=int, default=2000, help="iterations of B's book run")
    parser.add_argument("--small-jobs", type=int, default=300)
    args = parser.parse_args()
    keys = {name: secrets.token_urlsafe(16) for name in "ABC"}
    settings = Settings(api_keys=SecretStr(",".join(keys.values())), secret_key=SecretStr(secrets.token_urlsafe(32)))
    out(f"zdl tenants bench: {os.cpu_count()} CPUs, Python {platform.python_version()}; data {args.data_dir}; "
        f"limits: {settings.max_running_jobs_per_key} running and {settings.max_stored_jobs_per_key} stored jobs "
        f"per key, {settings.worker_memory_mb} MB per block worker, {settings.max_job_core_hours} core-hours per job")
    with tempfile.TemporaryDirectory(prefix="zdl-tenants-") as tmp:
        env = {"ZDL_DATA_DIR": str(args.data_dir), "ZDL_CACHE_DIR": str(Path(tmp) / "cache"), "ZDL_MNIST_MIRRORS": ""}
        with LocalCluster(Path(tmp) / "cluster", block_workers=2, port=0, settings=settings, persist=True,
                          env=env) as cluster:
            clients = {name: httpx.Client(base_url=cluster.url, timeout=60, headers={"Authorization": f"Bearer {k}"})
                       for name, k in keys.items()}
            a, b, c = clients["A"], clients["B"], clients["C"]
            book = job_body(args.iters)

            solo_first, solo_wall, _ = timed_run(b, book)
            out(f"(a) B's book run alone ({args.iters} iterations): first iteration after {solo_first:.2f} s, "
                f"done in {solo_wall:.1f} s")

            workers = {p.name: p.pid for p in (cluster.coordinator, *cluster.blocks) if p is not None}
            memory = PeakMemory(workers)
            heaviest = job_body(20, hidden=settings.max_hidden_size, batch=settings.max_batch_size)
            heavy = [a.post("/v1/jobs", json=heaviest).raise_for_status().json()]
            heavy += [a.post("/v1/jobs", json=job_body(10_000, hidden=300, batch=1000)).raise_for_status().json()
                      for _ in range(settings.max_running_jobs_per_key + 1)]
            running = settings.max_running_jobs_per_key
            started = [wait(a, j["id"], until=("running", *FINISHED))["status"] for j in heavy[:running]]
            statuses = [a.get(f"/v1/jobs/{j['id']}").json()["status"] for j in heavy]
            out(f"(b) key A: {len(heavy)} jobs (the heaviest admitted, {heavy[0]['estimate']['core_seconds']:.0f} "
                f"core-s, and 784-300-10 batch 1000); {started.count('running')} running, the rest "
                f"{', '.join(statuses[running:])}")
            time.sleep(3)  # A's block groups fill both workers
            first, wall, job = timed_run(b, book)
            out(f"    key B's book run meanwhile: first iteration after {first:.2f} s (target <= 5 s), done in "
                f"{wall:.1f} s = {wall / solo_wall:.2f}x alone (target <= 2.5x); {job['status']}")
            for j in heavy:
                a.post(f"/v1/jobs/{j['id']}/cancel")
            for j in heavy:
                wait(a, j["id"])
            peaks = memory.stop()
            out("(c) peak resident memory: " + ", ".join(f"{n} {mb:.0f} MB" for n, mb in peaks.items())
                + f" (block workers' budget {settings.worker_memory_mb} MB)")

            out(f"(d) key C: {args.small_jobs} small jobs one after another; main Redis used memory:")
            refused = 0
            for n in range(1, args.small_jobs + 1):
                response = c.post("/v1/jobs", json=job_body(50, hidden=20, method="backprop"))
                if response.status_code == 429:
                    refused += 1
                else:
                    wait(c, response.raise_for_status().json()["id"])
                if n % 25 == 0:
                    out(f"    after {n:3d} jobs ({refused:3d} refused with 429): "
                        f"{redis_used_mb(cluster.settings.redis_url):.2f} MB")
            for client in clients.values():
                client.close()


if __name__ == "__main__":
    main()
