"""A simulated class of 30 on one real local cluster (issue 20): do all jobs end as they should, does every
student wait about as long as the others, and does the service stay responsive while keys come and go?

A local cluster (the main, step and broker Redis, 1 coordinator worker, 2 block workers, the API) with the
default limits. An admin key creates 30 named keys through POST /v1/admin/keys; each student submits two of
the book's runs (784-50-10, batch 100, numerical) at --iters iterations at random times over --minutes; five
students make one of their two a small sweep (2 learning rates), one in ten cancels one of theirs. Midway the
admin revokes two keys and adds two more (each of which submits two runs in the second half), and one block
worker is SIGKILLed and replaced (LocalCluster.replace_dead, as the supervisor of `zdl cluster up` does).

Printed against the targets: jobs that ended as they should (revoked keys' unfinished jobs and cancelled ones
end `cancelled`, the rest `succeeded`; none lost), the wait from submit to the first iteration, seen by polling
each job about once a second (p50, p95, max; target max <= 3x mean) and the worst key's, Jain's fairness index
over the keys' measured CPU seconds (GET /v1/usage as admin; target >= 0.9), GET p99 of the polls (target
< 50 ms), the main Redis's memory and each process's peak resident memory.

    python bench/classroom.py [--data-dir DIR] [--minutes 3] [--iters 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import SecretStr
from tenants import job_body, redis_used_mb, tree_rss_mb

from worker.cluster.launcher import LocalCluster
from worker.settings import Settings

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-small"
FINISHED = ("succeeded", "failed", "cancelled")
STUDENTS, SWEEPERS, REVOKED, ADDED = 30, 5, 2, 2


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class Submission:
    """One job as the class sees it: whose, when it was sent, what it should end as."""

    key: str
    job_id: str
    submitted: float
    expected: str = "succeeded"
    first_iteration: float | None = None
    status: str = "queued"


@dataclass
class Classroom:
    """The admin's client, the students' keys, and every job submitted, with the GET latencies of the polls."""

    admin: httpx.Client
    book: dict[str, Any]
    keys: dict[str, str] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    jobs: list[Submission] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    get_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = 0.0  # time.monotonic() when the class began
    fault_at: float | None = None  # seconds after the start: the block worker SIGKILLed

    def add_key(self, name: str) -> None:
        made = self.admin.post("/v1/admin/keys", json={"name": name}).raise_for_status().json()
        self.keys[name] = made["key"]

    def revoke(self, name: str) -> None:
        self.admin.delete(f"/v1/admin/keys/{name}").raise_for_status()
        with self.lock:
            self.revoked.add(name)
            for job in self.jobs:  # what had not ended is cancelled with the key
                if job.key == name and job.status not in FINISHED:
                    job.expected = "cancelled"

    def submit(self, name: str, sweep: bool) -> list[Submission]:
        headers = {"Authorization": f"Bearer {self.keys[name]}"}
        now = time.monotonic()
        if sweep:
            body = {"base": self.book, "grid": {"learning_rate": [0.1, 0.05]}}
            response = self.admin.post("/v1/sweeps", json=body, headers=headers)
            ids = [run["job_id"] for run in response.json()["runs"]] if response.status_code == 201 else []
        else:
            response = self.admin.post("/v1/jobs", json=self.book, headers=headers)
            ids = [response.json()["id"]] if response.status_code == 201 else []
        if response.status_code != 201:
            self.refused.append(f"{name}: {response.status_code} {response.text[:120]}")
        made = [Submission(name, job_id, now) for job_id in ids]
        with self.lock:
            self.jobs += made
        return made

    def cancel(self, job: Submission) -> None:
        with self.lock:
            if job.status in FINISHED:
                return
            job.expected = "cancelled"
        response = self.admin.post(f"/v1/jobs/{job.job_id}/cancel",
                                   headers={"Authorization": f"Bearer {self.keys[job.key]}"})
        ended = response.raise_for_status().json()["status"]
        if ended in FINISHED and ended != "cancelled":  # it had ended before the cancel came: it keeps that end
            with self.lock:
                job.expected = ended

    def poll_once(self) -> int:
        """GET every unfinished job (as admin: revoked keys' jobs too); how many are still unfinished."""
        with self.lock:
            open_jobs = [j for j in self.jobs if j.status not in FINISHED]
        for job in open_jobs:
            began = time.monotonic()
            response = self.admin.get(f"/v1/jobs/{job.job_id}")
            seen = time.monotonic()
            self.get_ms.append((seen - began) * 1000)
            body = response.raise_for_status().json()
            with self.lock:
                job.status = body["status"]
                if job.first_iteration is None and body["progress"]["iteration"] >= 1:
                    job.first_iteration = seen
        return len(open_jobs)


class PeakMemory:
    """Samples every process of the cluster (by name, so a replaced worker counts under its name) every 0.5 s."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster, self.peak_mb = cluster, {p.name: 0.0 for p in cluster.processes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for proc in self.cluster.processes:
                self.peak_mb[proc.name] = max(self.peak_mb.get(proc.name, 0.0), tree_rss_mb(proc.pid))

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def plan(rng: random.Random, minutes: float) -> list[tuple[float, str, bool]]:
    """(seconds from the start, student, a sweep?) for every student's two submissions, in time order."""
    span = minutes * 60
    names = [f"student{n:02d}" for n in range(1, STUDENTS + 1)]
    sweepers = set(rng.sample(names, SWEEPERS))
    events = [(rng.uniform(0, span), name, i == 0 and name in sweepers) for name in names for i in range(2)]
    added = [f"late{n}" for n in range(1, ADDED + 1)]
    events += [(rng.uniform(span / 2 + 1, span), name, False) for name in added for _ in range(2)]
    return sorted(events)


def jain(values: list[float]) -> float:
    """Jain's fairness index: (sum x)^2 / (n sum x^2); 1 when every key had the same."""
    x = np.asarray(values, dtype=float)
    return float(x.sum() ** 2 / (len(x) * (x ** 2).sum())) if x.any() else 1.0


def run_class(room: Classroom, cluster: LocalCluster, args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    for n in range(1, STUDENTS + 1):
        room.add_key(f"student{n:02d}")
    events = plan(rng, args.minutes)
    cancellers = set(rng.sample(sorted(room.keys), STUDENTS // 10))
    doomed = rng.sample(sorted(room.keys), REVOKED)
    start, midway_done, pending_cancels = time.monotonic(), False, []
    room.started = start
    while True:
        unfinished = room.poll_once()  # every round: a job's first iteration is seen within about a second
        if not (unfinished or events or pending_cancels):
            break
        round_began = now = time.monotonic() - start
        if not midway_done and now >= args.minutes * 30:
            midway_done = True
            for name in doomed:
                room.revoke(name)
            for n in range(1, ADDED + 1):
                room.add_key(f"late{n}")
            killed = cluster.blocks[0]
            room.fault_at = time.monotonic() - start
            os.kill(killed.pid, signal.SIGKILL)
            killed.popen.wait()
            replaced = cluster.replace_dead(timeout_s=300)
            out(f"    at {now:.0f} s: revoked {', '.join(doomed)}; added late1, late2; SIGKILLed {killed.name} "
                f"(pid {killed.pid}), replaced: {', '.join(replaced)}")
        while events and events[0][0] <= now:
            _, name, sweep = events.pop(0)
            if name in room.revoked:
                continue  # a revoked student stops submitting
            made = room.submit(name, sweep)
            if name in cancellers and made and not any(j.expected == "cancelled" for j in room.jobs if j.key == name):
                pending_cancels.append((now + rng.uniform(2, 20), made[0]))
                cancellers.discard(name)
        for due, job in [c for c in pending_cancels if c[0] <= now]:
            room.cancel(job)
            pending_cancels.remove((due, job))
        time.sleep(max(0.2, 1.0 - (time.monotonic() - start - round_began)))  # each job polled about once a second
        if now > args.minutes * 60 + args.drain_minutes * 60:
            unfinished = sum(j.status not in FINISHED for j in room.jobs)
            out(f"    stopped waiting at {now:.0f} s: {unfinished} jobs unfinished")
            break


def report(room: Classroom, cluster: LocalCluster, peaks: dict[str, float]) -> None:
    ended = [j for j in room.jobs if j.status == j.expected]
    wrong = [f"{j.key} {j.job_id}: {j.status}, expected {j.expected}" for j in room.jobs if j.status != j.expected]
    cancelled = sum(j.expected == "cancelled" for j in room.jobs)
    out(f"| jobs that ended as they should | {len(ended)} of {len(room.jobs)} ({cancelled} "
        f"cancelled, by their student or with their key); {len(room.refused)} submissions refused | all; none lost |")
    for line in wrong[:10] + room.refused[:10]:
        out(f"|   {line} | | |")
    waits = {j.job_id: j.first_iteration - j.submitted for j in room.jobs if j.first_iteration is not None}
    w = np.array(list(waits.values()))
    never = sum(j.first_iteration is None and j.status != "cancelled" for j in room.jobs)
    out(f"| jobs that never reached their first iteration (and were not cancelled) | {never} | 0 |")
    if len(w):
        ratio = w.max() / w.mean()
        out(f"| wait from submit to first iteration ({len(w)} jobs) | p50 {np.percentile(w, 50):.1f} s, p95 "
            f"{np.percentile(w, 95):.1f} s, max {w.max():.1f} s, mean {w.mean():.1f} s: max = {ratio:.2f}x mean | "
            f"<= 3x mean: {'met' if ratio <= 3 else 'MISSED'} |")
        by_key: dict[str, list[float]] = {}
        for j in room.jobs:
            if j.job_id in waits:
                by_key.setdefault(j.key, []).append(waits[j.job_id])
        worst = max(by_key, key=lambda k: float(np.mean(by_key[k])))
        out(f"| the worst key's wait | {worst}: mean {np.mean(by_key[worst]):.1f} s over {len(by_key[worst])} jobs | |")
        longest = sorted((j for j in room.jobs if j.job_id in waits), key=lambda j: -waits[j.job_id])[:5]
        fault = f" (block worker SIGKILLed at {room.fault_at:.0f} s)" if room.fault_at is not None else ""
        out(f"| the five longest waits, and when those jobs were sent{fault} | "
            + ", ".join(f"{waits[j.job_id]:.1f} s (sent at {j.submitted - room.started:.0f} s)" for j in longest)
            + " | |")
    usage = room.admin.get("/v1/usage").raise_for_status().json()["keys"]
    cpu = {k["name"]: k["usage"]["cpu_seconds"] for k in usage if k["name"] in room.keys}
    steady = [cpu.get(name, 0.0) for name in room.keys if name not in room.revoked and not name.startswith("late")]
    every = [cpu.get(name, 0.0) for name in room.keys]
    index = jain(steady)
    out(f"| Jain's fairness over keys' CPU seconds | {index:.3f} over the {len(steady)} keys there throughout "
        f"({jain(every):.3f} over all {len(every)}); CPU s per key {min(steady):.0f} to {max(steady):.0f} | "
        f">= 0.9: {'met' if index >= 0.9 else 'MISSED'} |")
    p99 = float(np.percentile(room.get_ms, 99))
    p50 = float(np.percentile(room.get_ms, 50))
    out(f"| GET /v1/jobs/{{id}} p99 ({len(room.get_ms)} polls) | {p99:.1f} ms (p50 {p50:.1f} ms) | "
        f"< 50 ms: {'met' if p99 < 50 else 'MISSED'} |")
    out(f"| main Redis used memory | {redis_used_mb(cluster.settings.redis_url):.1f} MB | |")
    out("| peak resident memory | " + ", ".join(f"{n} {mb:.0f} MB" for n, mb in peaks.items()) + " | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ZDL_DATA_DIR", DEFAULT_DATA)))
    parser.add_argument("--minutes", type=float, default=3.0, help="the span over which students submit")
    parser.add_argument("--drain-minutes", type=float, default=4.0, help="how long to wait for the queue after it")
    parser.add_argument("--iters", type=int, default=1000, help="iterations of each book run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    admin_key = secrets.token_urlsafe(16)
    settings = Settings(admin_keys=SecretStr(admin_key), secret_key=SecretStr(secrets.token_urlsafe(32)))
    out(f"zdl classroom bench: {os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.2f} at start; {STUDENTS} students, book runs of {args.iters} iterations over "
        f"{args.minutes:g} min; limits: {settings.max_running_jobs_per_key} running jobs per key, "
        f"{settings.coordinators} at once")
    with tempfile.TemporaryDirectory(prefix="zdl-classroom-") as tmp:
        env = {"ZDL_DATA_DIR": str(args.data_dir), "ZDL_CACHE_DIR": str(Path(tmp) / "cache"), "ZDL_MNIST_MIRRORS": ""}
        cluster = LocalCluster(Path(tmp) / "cluster", block_workers=2, port=0, settings=settings, persist=True,
                               env=env)
        cluster.start(timeout_s=300)  # a busy machine can take more than the default minute
        try:
            admin = {"Authorization": f"Bearer {admin_key}"}
            with httpx.Client(base_url=cluster.url, timeout=60, headers=admin) as api:
                room = Classroom(api, job_body(args.iters))
                memory = PeakMemory(cluster)
                began = time.monotonic()
                run_class(room, cluster, args)
                peaks = memory.stop()
                out(f"done in {time.monotonic() - began:.0f} s; load average {os.getloadavg()[0]:.2f} at the end")
                out("| measurement | result | target |")
                out("|---|---|---|")
                report(room, cluster, peaks)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
