"""Chaos run of the training service: each fault done for real, mid-job, on a local cluster; prints a table.

Scenarios: a block worker SIGKILLed; the process running a job's coordinator SIGKILLed (the pool
process, then the whole Celery worker); the API restarted; Redis stopped for a few seconds and started
again (append-only file on); a job cancelled; a job whose data set is missing. For each: the outcome,
the time from the fault until the job progressed past the iteration it had reached (for cancel and
failure: until the record said so), and whether the weights are bit-identical to an undisturbed
local run with the same seed.

    python bench/chaos.py [--data-dir DIR] [--iters 400] [--outage-s 3]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faults  # bench/faults.py, the script's own directory
import httpx
import numpy as np
from pydantic import SecretStr

from worker.cluster.launcher import LocalCluster
from worker.settings import Settings
from zdl.datasets import load_mnist
from zdl.io import load_weights
from zdl.train import TrainConfig, Trainer

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-small"
FINISHED = ("succeeded", "failed", "cancelled")


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Chaos:
    def __init__(self, cluster: LocalCluster, api: httpx.Client, data: Any, iters: int) -> None:
        self.cluster, self.api, self.data, self.iters = cluster, api, data, iters
        self.local: dict[int, dict[str, np.ndarray]] = {}

    def body(self, seed: int, iters: int | None = None) -> dict[str, Any]:
        return {"model": {"hidden_size": 10}, "dataset": "mnist",
                "training": {"iters": iters or self.iters, "batch_size": 50, "learning_rate": 0.1, "seed": seed}}

    def job(self, job_id: str) -> dict[str, Any]:
        while True:  # through API restarts and Redis outages
            try:
                response = self.api.get(f"/v1/jobs/{job_id}")
                if response.status_code == 200:
                    return dict(response.json())
            except httpx.TransportError:
                pass
            time.sleep(0.02)

    def wait(self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not until(job := self.job(job_id)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id}: {job['status']} at {job['progress']['iteration']}")
            time.sleep(0.02)
        return job

    def bits_equal(self, job: dict[str, Any]) -> bool:
        seed = job["spec"]["training"]["seed"]
        if seed not in self.local:
            trainer = Trainer(self.data, TrainConfig(hidden_size=10, iters=self.iters, batch_size=50, seed=seed))
            trainer.run()
            self.local[seed] = trainer.net.params
        served = load_weights(self.api.get(job["links"]["weights"]).content).params
        return all(np.array_equal(served[k], v) for k, v in self.local[seed].items())

    def mid_job(self, seed: int, fault: Callable[[str], object]) -> tuple[str, float, str]:
        """Submit, let it reach a third of its iterations, do the fault; (outcome, recovery s, bits)."""
        job_id = self.api.post("/v1/jobs", json=self.body(seed)).json()["id"]
        reached = self.wait(job_id, lambda j: j["progress"]["iteration"] >= self.iters // 3)["progress"]["iteration"]
        began = time.monotonic()
        fault(job_id)
        self.wait(job_id, lambda j: j["progress"]["iteration"] > reached + 1 or j["status"] in FINISHED)
        recovered = time.monotonic() - began
        done = self.wait(job_id, lambda j: j["status"] in FINISHED)
        outcome = done["status"] + (f", resumed from {done['resumed_from']}" if done.get("resumed_from") else "")
        bits = ("yes" if self.bits_equal(done) else "NO") if done["status"] == "succeeded" else "-"
        self.cluster.replace_dead()
        return outcome, recovered, bits

    def cancel(self) -> tuple[str, float, str]:
        job_id = self.api.post("/v1/jobs", json=self.body(90, iters=100_000)).json()["id"]
        self.wait(job_id, lambda j: j["progress"]["iteration"] >= 10)
        began = time.monotonic()
        self.api.post(f"/v1/jobs/{job_id}/cancel")
        done = self.wait(job_id, lambda j: j["status"] in FINISHED)
        return done["status"], time.monotonic() - began, "-"

    def missing_data(self, data_dir: Path) -> tuple[str, float, str]:
        (data_dir / "mnist").rename(data_dir / "mnist.away")
        try:
            began = time.monotonic()
            job_id = self.api.post("/v1/jobs", json=self.body(91)).json()["id"]
            done = self.wait(job_id, lambda j: j["status"] in FINISHED)
            took = time.monotonic() - began
            time.sleep(2 * self.cluster.settings.heartbeat_ttl_s)
            runs = self.job(job_id).get("runs")
        finally:
            (data_dir / "mnist.away").rename(data_dir / "mnist")
        return f"{done['status']} after {runs} run, not retried: {done['error'].split(' and ')[0]}", took, "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST files (default: shared mnist-small)")
    parser.add_argument("--iters", type=int, default=400, help="iterations of each job (default 400)")
    parser.add_argument("--outage-s", type=float, default=3.0, help="how long Redis is down (default 3 s)")
    args = parser.parse_args()
    source = args.data_dir or (DEFAULT_DATA if DEFAULT_DATA.exists() else None)
    if source is None:
        parser.error("no data: pass --data-dir (a directory with the four MNIST files)")
    with tempfile.TemporaryDirectory(prefix="zdl-chaos-") as tmp:
        work = Path(tmp)
        shutil.copytree(source, work / "data" / "mnist")  # a copy: the missing-data scenario renames it
        data = load_mnist(data_dir=work / "data" / "mnist")
        env = {"ZDL_DATA_DIR": str(work / "data"), "ZDL_CACHE_DIR": str(work / "cache"), "ZDL_MNIST_MIRRORS": ""}
        key = secrets.token_urlsafe(16)
        settings = Settings(api_keys=SecretStr(key), secret_key=SecretStr(secrets.token_urlsafe(32)),
                            heartbeat_interval_s=0.5, heartbeat_ttl_s=2.0,
                            block_poll_s=0.25, checkpoint_every=20)
        out(f"zdl chaos run: {os.cpu_count()} CPUs; jobs 784-10-10, {args.iters} iterations of 50 "
            f"({len(data[0][0])} training images); checkpoints every {settings.checkpoint_every} iterations")
        with LocalCluster(work / "cluster", block_workers=2, port=0, settings=settings, persist=True,
                          coordinators=2, env=env) as cluster, \
                httpx.Client(base_url=cluster.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as api:
            chaos = Chaos(cluster, api, data, args.iters)

            def outage(_: str) -> None:
                faults.redis_outage(cluster, args.outage_s)

            def step_outage(_: str) -> None:
                faults.redis_outage(cluster, args.outage_s, step=True)

            scenarios: dict[str, Callable[[], tuple[str, float, str]]] = {
                "undisturbed": lambda: chaos.mid_job(1, lambda _: None),
                "SIGKILL a block worker": lambda: chaos.mid_job(2, lambda _: faults.kill_block_worker(cluster)),
                "SIGKILL the coordinator's pool process":
                    lambda: chaos.mid_job(3, lambda j: faults.kill_coordinator(cluster, j, whole_worker=False)),
                "SIGKILL the coordinator's whole worker":
                    lambda: chaos.mid_job(4, lambda j: faults.kill_coordinator(cluster, j, whole_worker=True)),
                "restart the API": lambda: chaos.mid_job(5, lambda _: cluster.restart_api()),
                f"Redis down {args.outage_s:g} s": lambda: chaos.mid_job(6, outage),
                f"step Redis down {args.outage_s:g} s": lambda: chaos.mid_job(7, step_outage),
                "cancel": chaos.cancel,
                "data set missing": lambda: chaos.missing_data(work / "data"),
            }
            rows = []
            for name, scenario in scenarios.items():
                outcome, seconds, bits = scenario()
                rows.append((name, outcome, f"{seconds:.2f} s", bits))
                out(f"  {name}: {outcome}, {seconds:.2f} s, bits equal: {bits}")
    width = max(len(r[0]) for r in rows)
    owidth = max(len(r[1]) for r in rows)
    out()
    out(f"| {'scenario'.ljust(width)} | {'outcome'.ljust(owidth)} | time to recover | bits equal |")
    out(f"|{'-' * (width + 2)}|{'-' * (owidth + 2)}|-----------------|------------|")
    for name, outcome, seconds, bits in rows:
        out(f"| {name.ljust(width)} | {outcome.ljust(owidth)} | {seconds.rjust(15)} | {bits.ljust(10)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
