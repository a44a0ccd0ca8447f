"""What bench/soak.py reads at each interval, and how it judges a series: flat after warm-up, or growing.

A process's figures are those of its whole tree (a Celery worker and its prefork pool): resident memory (each
process's peak over the interval) summed, open descriptors summed. A process restarted by a fault starts a new
series: its figures count only from its own start, its first minutes its warm-up (a fresh process grows to its
working size again). Each Redis's figures come from INFO (used_memory, connected_clients), read over one
connection kept open for the whole run, so the reader adds the same one client to every sample.

A series is flat when its peak after warm-up does not rise above its peak during warm-up by more than the
tolerance below (FLAT_SHARE): a worker that holds a bounded working set, and gives memory back between tasks
or not, is flat; one that keeps growing is not, whatever the shape of its curve.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis

from worker.cluster.launcher import LocalCluster

#: How far a series' peak after warm-up may rise above its peak during warm-up and still be flat: a share of the
#: warm-up peak, or this floor (in the series' own unit), whichever is larger. A bounded working set reaches its
#: peak in warm-up (every job shape of the mix runs within its first minutes, every coordinator slot in its
#: first seconds: bench/soak_load.py's class start), and later intervals reach much the same height; a leak or
#: an unbounded cache keeps setting new peaks. The share is what one interval may reach above another of the
#: same steady state: a block worker's interval peak is its idle size, a turn's copy of the data set (47 MB on
#: mnist-small) and the working set of the largest job it ran then, which differs between the mix's shapes by
#: a few MB, well under 5% of its ~270 MB. Below the floor lies the noise of one allocation or one socket.
FLAT_SHARE = 0.05
FLAT_FLOOR = {"peak_rss_mb": 5.0, "fds": 2.0, "used_mb": 1.0, "clients": 2.0}


def tree_pids(pid: int) -> list[int]:
    """The process and its children (a prefork pool's processes)."""
    try:
        return [pid, *(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    except OSError:
        return []


def tree_peak_rss_mb(pid: int) -> float:
    """The highest resident memory of each process of the tree since the last reading, summed: VmHWM, then
    reset (writing 5 to /proc/PID/clear_refs, Linux 4.0 on), so that the next reading covers the next interval
    only. A sample's instant would catch a worker between two tasks or in one, by chance: a block worker gives
    its task's memory back when the task ends (worker/celery_app/heap.py), 219 MB idle, 271 MB during a turn.
    Where the reset is refused, the process's resident memory at this instant (VmRSS)."""
    total = 0.0
    for p in tree_pids(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            field = "VmHWM:"
            try:
                Path(f"/proc/{p}/clear_refs").write_text("5")
            except OSError:
                field = "VmRSS:"
        except OSError:
            continue
        total += sum(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith(field))
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
    """One interval's figures: {series name: value}, e.g. "blocks1 peak_rss_mb" or "redis-steps clients"; and the
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
            sample.values[f"{proc.name} peak_rss_mb"] = tree_peak_rss_mb(proc.pid)
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
    """A series after warm-up against itself during warm-up: the peaks of both, the least-squares slope per
    minute after warm-up (shown, not judged: a sawtooth's slope depends on where the window cuts it), and
    whether the later peak stays within the flat tolerance of the warm-up peak."""

    name: str
    warmup_peak: float
    later_peak: float
    slope_per_min: float
    flat: bool

    @property
    def rise(self) -> float:
        return self.later_peak - self.warmup_peak


def trend(name: str, samples: list[Sample], warmup_min: float) -> Trend | None:
    """None when fewer than 3 samples after warm-up carry the series, or none during it (a process's series:
    its last process's, from its start; its warm-up is the first `warmup_min` minutes of that process)."""
    process = name.split(" ")[0]
    since = samples[-1].since.get(process, 0.0)
    points = [(s.minute, s.values[name]) for s in samples if s.since.get(process, 0.0) == since and name in s.values]
    warmup = [value for minute, value in points if minute < since + warmup_min]
    later = [(minute, value) for minute, value in points if minute >= since + warmup_min]
    if len(later) < 3 or not warmup:
        return None
    minutes, values = np.array(later).T
    slope = float(np.polyfit(minutes, values, 1)[0])
    warmup_peak, later_peak = max(warmup), float(values.max())
    tolerance = max(FLAT_SHARE * abs(warmup_peak), FLAT_FLOOR[name.rsplit(" ", 1)[1]])
    return Trend(name, warmup_peak, later_peak, slope, later_peak - warmup_peak <= tolerance)


def table(samples: list[Sample]) -> list[str]:
    """A Markdown table: one row per series, one column per sample."""
    names = sorted({n for s in samples for n in s.values})
    head = "| series | " + " | ".join(f"{s.minute:.1f} min" for s in samples) + " |"
    rule = "|---|" + "---:|" * len(samples)
    rows = [f"| {n} | " + " | ".join(_figure(s.values.get(n)) for s in samples) + " |" for n in names]
    return [head, rule, *rows]


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value % 1 else f"{value:.0f}"
