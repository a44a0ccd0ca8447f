"""Metrics kept in Redis, so every worker process adds to them and the API can expose them after a restart.

prometheus-client's own registries are per process; the API's collector reads these instead.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass

import redis

from worker.settings import Settings
from worker.state import keys
from worker.state.replies import hash_reply

BLOCK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5)


@dataclass(frozen=True)
class RedisHistogram:
    """A Prometheus-style histogram in one Redis hash: per-bucket counts, `sum` and `count`."""

    key: str
    buckets: tuple[float, ...]

    @classmethod
    def of(cls, settings: Settings, name: str, buckets: tuple[float, ...]) -> RedisHistogram:
        return cls(keys.stat(settings, name), buckets)

    def observe(self, pipe: redis.client.Pipeline, *values: float) -> None:
        """Queue the observations on `pipe` (the caller's round trip carries them)."""
        if not values:
            return
        counts = Counter(self._label(v) for v in values)
        for label, count in counts.items():
            pipe.hincrby(self.key, label, count)
        pipe.hincrbyfloat(self.key, "sum", math.fsum(values))
        pipe.hincrby(self.key, "count", len(values))

    def _label(self, value: float) -> str:
        index = bisect.bisect_left(self.buckets, value)
        return repr(self.buckets[index]) if index < len(self.buckets) else "+Inf"

    def read(self, client: redis.Redis) -> tuple[list[tuple[str, int]], float]:
        """Cumulative (upper bound, count) pairs ending with +Inf, and the sum."""
        raw = {k.decode(): v.decode() for k, v in hash_reply(client.hgetall(self.key)).items()}
        cumulative, running = [], 0
        for bound in [*map(repr, self.buckets), "+Inf"]:
            running += int(raw.get(bound, 0))
            cumulative.append((bound, running))
        total = float(raw.get("sum", 0.0))
        return cumulative, total if math.isfinite(total) else 0.0


def block_seconds(settings: Settings) -> RedisHistogram:
    """Compute time of one block group of one step, as the worker measured it."""
    return RedisHistogram.of(settings, "block_seconds", BLOCK_BUCKETS)


def fanout_overhead_seconds(settings: Settings) -> RedisHistogram:
    """Per iteration: the coordinator's gradient wall time minus the slowest block's compute time."""
    return RedisHistogram.of(settings, "fanout_overhead_seconds", OVERHEAD_BUCKETS)


def iterations_key(settings: Settings, owner: str | None = None) -> str:
    """Training iterations done: all jobs', or one owner's."""
    return keys.stat(settings, "iterations") if owner is None else keys.stat(settings, "iterations", owner)
