"""Per-key Prometheus metrics, labelled by the key's name: only an admin's /metrics carries them."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.settings import Settings
from worker.state import stats, usage
from worker.state.apikeys import KeyRegistry


class KeyCollector(Collector):
    """zdl_key_jobs{key,status}, zdl_key_cpu_seconds{key}, zdl_key_stored_bytes{key}, zdl_key_iterations{key}."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client, self.settings = client, settings

    def collect(self) -> Iterator[Metric]:
        entries = KeyRegistry(self.client, self.settings).all()
        totals = usage.totals(self.client, self.settings, [e.owner for e in entries])
        with self.client.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.get(stats.iterations_key(self.settings, entry.owner))
            iterations = pipe.execute()
        jobs = GaugeMetricFamily("zdl_key_jobs", "Jobs by key and status", labels=["key", "status"])
        cpu = CounterMetricFamily("zdl_key_cpu_seconds", "CPU time measured for the key's jobs", labels=["key"])
        stored = GaugeMetricFamily("zdl_key_stored_bytes", "Bytes reserved for the key's stored results",
                                   labels=["key"])
        done = CounterMetricFamily("zdl_key_iterations", "Training iterations done by the key's jobs", labels=["key"])
        for entry, count in zip(entries, iterations, strict=True):
            row = totals[entry.owner]
            for status, n in row["jobs"].items():
                jobs.add_metric([entry.name, status], n)
            cpu.add_metric([entry.name], row["cpu_seconds"])
            stored.add_metric([entry.name], row["stored_bytes"])
            done.add_metric([entry.name], int(count or 0))
        yield from (jobs, cpu, stored, done)
