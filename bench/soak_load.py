"""The mixed load of bench/soak.py: what 20 users do at once, and a ledger of every job they submitted.

It starts with every key submitting a job at once (`class_starts`); then each activity is a thread with its
own HTTP client: submit (a key in turn), poll (a job's record, a key's list), stream (open a job's event
stream, read a few events, drop it), sweep (two jobs), cancel (a running job), tidy (delete work seen to
end, so that the keys' stored-job quotas are never the limit). Every answer is counted;
a 5xx is the figure that must stay 0. A refusal (429: a key's quota) is an answer, not an error.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

ENDED = ("succeeded", "failed", "cancelled")


def job_body(rng: random.Random) -> dict[str, Any]:
    """A small job: mostly the fast numerical method, some backprop, a few numerical-reference steps (slow)."""
    method = rng.choices(["numerical", "backprop", "numerical-reference"], weights=[6, 3, 1])[0]
    iters = rng.randint(2, 4) if method == "numerical-reference" else rng.randint(20, 200)
    return {"model": {"hidden_size": 10}, "dataset": "mnist", "gradient": {"method": method},
            "training": {"iters": iters, "batch_size": 50, "seed": rng.randint(0, 1000)}}


class Load:
    def __init__(self, url: str, keys: list[str], submit_every_s: float) -> None:
        self.url, self.keys, self.submit_every_s = url, keys, submit_every_s
        self.lock = threading.Lock()
        self.owner: dict[str, str] = {}  # job id -> the key that submitted it
        self.ended_ids: set[str] = set()
        self.sweeps: dict[str, str] = {}  # sweep id -> key, until the sweep is deleted
        self.in_sweeps: set[str] = set()  # jobs of sweeps (deleted with their sweep)
        self.deleted: set[str] = set()
        self.interval: Counter[str] = Counter()
        self.total_5xx = self.total_errors = 0

    # --- the ledger -----------------------------------------------------------------------------------------
    def request(self, http: httpx.Client, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response | None:
        """One request as `key`; counted; None when it got no answer (an error, counted too)."""
        try:
            response = http.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kwargs)
        except httpx.HTTPError:
            self.count(None)
            return None
        self.count(response.status_code)
        return response

    def count(self, status: int | None) -> None:
        with self.lock:
            self.interval["requests"] += 1
            if status is None:
                self.interval["errors"] += 1
                self.total_errors += 1
            elif status >= 500:
                self.interval["5xx"] += 1
                self.total_5xx += 1

    def take_interval(self) -> Counter[str]:
        with self.lock:
            counts, self.interval = self.interval, Counter()
        return counts

    def submitted(self) -> int:
        return len(self.owner)

    def ended(self) -> int:
        return len(self.ended_ids)

    def open_jobs(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(job, key) for job, key in self.owner.items() if job not in self.ended_ids]

    def seen(self, job_id: str, record: dict[str, Any]) -> None:
        if record.get("status") in ENDED:
            with self.lock:
                self.ended_ids.add(job_id)

    def audit(self) -> tuple[list[str], list[str]]:
        """(lost, in flight): jobs never seen to end, by their record now (lost: gone, or in no live status)."""
        lost, in_flight = [], []
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for job_id, key in self.open_jobs():
                response = self.request(http, "GET", f"/v1/jobs/{job_id}", key)
                status = response.json().get("status") if response is not None and response.status_code == 200 else None
                if status in ENDED:
                    self.ended_ids.add(job_id)
                elif status in ("queued", "running"):
                    in_flight.append(job_id)
                else:
                    lost.append(job_id)
        return lost, in_flight

    # --- the activities -------------------------------------------------------------------------------------
    def class_starts(self) -> None:
        """Every key submits a job at once, as a class does when a lesson starts: every coordinator slot then
        runs a job (and opens its connections) in the warm-up, not first at a later burst, such as the jobs
        resumed after a coordinator's restart, where the step would read as growth."""
        rng = random.Random(-1)
        bodies = [job_body(rng) for _ in self.keys]
        with httpx.Client(base_url=self.url, timeout=30) as http, ThreadPoolExecutor(len(self.keys)) as pool:
            answers = list(pool.map(lambda kb: self.request(http, "POST", "/v1/jobs", kb[0], json=kb[1]),
                                    zip(self.keys, bodies, strict=True)))
        with self.lock:
            self.owner.update({r.json()["id"]: key for key, r in zip(self.keys, answers, strict=True)
                               if r is not None and r.status_code == 201})

    def threads(self, stop: threading.Event) -> list[threading.Thread]:
        activities: list[tuple[Callable[[httpx.Client, random.Random], None], float]] = [
            (self.submit, self.submit_every_s), (self.poll, 0.2), (self.stream, 1.0), (self.sweep, 30.0),
            (self.cancel, 15.0), (self.tidy, 5.0)]
        return [threading.Thread(target=self._loop, args=(activity, every, stop, seed), daemon=True,
                                 name=activity.__name__) for seed, (activity, every) in enumerate(activities)]

    def _loop(self, activity: Callable[[httpx.Client, random.Random], None], every: float,
              stop: threading.Event, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not stop.wait(every):
                activity(http, rng)

    def submit(self, http: httpx.Client, rng: random.Random) -> None:
        key = self.keys[len(self.owner) % len(self.keys)]
        response = self.request(http, "POST", "/v1/jobs", key, json=job_body(rng))
        if response is not None and response.status_code == 201:
            with self.lock:
                self.owner[response.json()["id"]] = key

    def poll(self, http: httpx.Client, rng: random.Random) -> None:
        jobs = self.open_jobs()
        if jobs:
            job_id, key = rng.choice(jobs)
            response = self.request(http, "GET", f"/v1/jobs/{job_id}", key)
            if response is not None and response.status_code == 200:
                self.seen(job_id, response.json())
        if rng.random() < 0.2:
            self.request(http, "GET", "/v1/jobs", rng.choice(self.keys))

    def stream(self, http: httpx.Client, rng: random.Random) -> None:
        """Open a job's event stream, read for up to 2 s (or 3 events), drop it."""
        jobs = self.open_jobs()
        if not jobs:
            return
        job_id, key = rng.choice(jobs)
        deadline, events = time.monotonic() + 2, 0
        try:
            with http.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Authorization": f"Bearer {key}"},
                             timeout=httpx.Timeout(30, read=2)) as response:
                self.count(response.status_code)
                for line in response.iter_lines():
                    events += line.startswith("data:")
                    if events >= 3 or time.monotonic() > deadline:
                        break
        except httpx.ReadTimeout:
            pass  # a quiet stream, dropped
        except httpx.HTTPError:
            self.count(None)

    def sweep(self, http: httpx.Client, rng: random.Random) -> None:
        key = rng.choice(self.keys)
        body = {"base": {"dataset": "mnist", "training": {"iters": 30, "batch_size": 50}},
                "grid": {"hidden_size": [5, 10]}}
        response = self.request(http, "POST", "/v1/sweeps", key, json=body)
        if response is not None and response.status_code == 201:
            sweep = response.json()
            with self.lock:
                self.sweeps[sweep["id"]] = key
                self.owner.update({run["job_id"]: key for run in sweep["runs"]})
                self.in_sweeps.update(run["job_id"] for run in sweep["runs"])

    def cancel(self, http: httpx.Client, rng: random.Random) -> None:
        jobs = self.open_jobs()
        if jobs:
            job_id, key = rng.choice(jobs)
            self.request(http, "POST", f"/v1/jobs/{job_id}/cancel", key)

    def tidy(self, http: httpx.Client, rng: random.Random) -> None:
        """Delete finished sweeps, then ended jobs outside any sweep (a sweep's jobs go with it)."""
        with self.lock:
            sweeps = list(self.sweeps.items())
        for sweep_id, key in sweeps:
            response = self.request(http, "GET", f"/v1/sweeps/{sweep_id}", key)
            if response is None or response.status_code != 200:
                continue
            sweep = response.json()
            for run in sweep["runs"]:
                self.seen(run["job_id"], run)
            if sweep["status"] == "finished" and self._deleted(self.request(http, "DELETE", f"/v1/sweeps/{sweep_id}",
                                                                            key)):
                with self.lock:
                    del self.sweeps[sweep_id]
        with self.lock:
            done = [(job, self.owner[job]) for job in self.ended_ids - self.in_sweeps - self.deleted]
        for job_id, key in done[:20]:
            if self._deleted(self.request(http, "DELETE", f"/v1/jobs/{job_id}", key)):
                with self.lock:
                    self.deleted.add(job_id)

    @staticmethod
    def _deleted(response: httpx.Response | None) -> bool:
        return response is not None and response.status_code in (204, 404)
