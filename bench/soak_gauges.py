"""What bench/soak.py reads at each interval, and how it judges a series: flat after warm-up, or growing.

A process's figures are those of its whole tree (a Celery worker and its prefork pool): resident memory summed,
open descriptors summed. A process restarted by a fault starts a new series: its figures count only from its own
start plus the warm-up (a fresh process grows to its working size again). Each Redis's figures come from INFO
(used_memory, connected_clients), read over one connection kept open for the whole run, so the reader adds the
same one client to every sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis

from worker.cluster.launcher import LocalCluster

#: How much a series may move over the measured window and still be flat: a share of its mean, or this floor
#: (in the series' own unit), whichever is larger. Below the floor lies the noise of one allocation or one socket.
FLAT_SHARE = 0.05
FLAT_FLOOR = {"rss_mb": 5.0, "fds": 2.0, "used_mb": 1.0, "clients": 2.0}


def tree_pids(pid: int) -> list[int]:
    """The process and its children (a prefork pool's processes)."""
    try:
        return [pid, *(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    except OSError:
        return []


def tree_rss_mb(pid: int) -> float:
    total = 0.0
    for p in tree_pids(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
    return total


def tree_fds(pid: int) -> int:
    total = 0
    for p in tree_pids(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            continue
    return total


@dataclass
class Sample:
    """One interval's figures: {series name: value}, e.g. "blocks1 rss_mb" or "redis-steps clients"; and the
    process behind each name then, with the minute it was first seen."""

    minute: float
    values: dict[str, float] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)


class Gauges:
    """Reads every process of a LocalCluster (by name: a replaced process keeps its name) and each Redis."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        s = cluster.settings
        urls = {"redis": s.redis_url, "redis-steps": s.step_redis_url, "redis-broker": s.broker_url}
        self.redis = {name: redis.Redis.from_url(url, socket_timeout=5) for name, url in urls.items() if url}
        self.first_seen: dict[int, float] = {}  # pid -> minute

    def read(self, minute: float) -> Sample:
        sample = Sample(minute)
        for proc in self.cluster.processes:
            if proc.name.startswith("redis"):
                continue
            sample.since[proc.name] = self.first_seen.setdefault(proc.pid, minute)
            sample.values[f"{proc.name} rss_mb"] = tree_rss_mb(proc.pid)
            sample.values[f"{proc.name} fds"] = float(tree_fds(proc.pid))
        for name, client in self.redis.items():
            try:
                info = client.info()
            except redis.RedisError:  # restarting: the sample has no figure for it
                continue
            sample.values[f"{name} used_mb"] = int(info["used_memory"]) / 2**20
            sample.values[f"{name} clients"] = float(info["connected_clients"])
        return sample

    def close(self) -> None:
        for client in self.redis.values():
            client.close()


@dataclass(frozen=True)
class Trend:
    """A series after warm-up: its least-squares slope per minute, and whether its growth over the window is
    within the flat tolerance."""

    name: str
    mean: float
    slope_per_min: float
    growth: float
    flat: bool


def trend(name: str, samples: list[Sample], warmup_min: float) -> Trend | None:
    """None when fewer than 3 samples after warm-up carry the series (a process's: its last process's, from its
    start plus the warm-up)."""
    process = name.split(" ")[0]
    since = samples[-1].since.get(process, 0.0)
    points = [(s.minute, s.values[name]) for s in samples
              if s.minute >= since + warmup_min and s.since.get(process, 0.0) == since and name in s.values]
    if len(points) < 3:
        return None
    minutes, values = np.array(points).T
    slope = float(np.polyfit(minutes, values, 1)[0])
    growth = slope * float(minutes[-1] - minutes[0])
    tolerance = max(FLAT_SHARE * abs(float(values.mean())), FLAT_FLOOR[name.rsplit(" ", 1)[1]])
    return Trend(name, float(values.mean()), slope, growth, growth <= tolerance)


def table(samples: list[Sample]) -> list[str]:
    """A Markdown table: one row per series, one column per sample."""
    names = sorted({n for s in samples for n in s.values})
    head = "| series | " + " | ".join(f"{s.minute:.1f} min" for s in samples) + " |"
    rule = "|---|" + "---:|" * len(samples)
    rows = [f"| {n} | " + " | ".join(_figure(s.values.get(n)) for s in samples) + " |" for n in names]
    return [head, rule, *rows]


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value % 1 else f"{value:.0f}"
