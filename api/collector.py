"""Prometheus metrics read from Redis at scrape time, so they cover every worker and survive API restarts.

Job counts and iterations are a tenant's own business: a collector for one owner counts only theirs.
Worker counts and the block and fan-out histograms describe the service, not anyone's jobs.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.scheduling.heartbeat import alive_workers
from worker.settings import Settings
from worker.state import stats
from worker.state.job_store import JobStore


class ServiceCollector(Collector):
    """zdl_jobs{status}, zdl_workers{queue}, zdl_iterations_total, and the block and fan-out histograms.

    owner: count only this owner's jobs and iterations; None: everyone's.
    """

    def __init__(self, client: redis.Redis, settings: Settings, owner: str | None = None) -> None:
        self.client, self.settings, self.owner = client, settings, owner

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("zdl_jobs", "Jobs by status", labels=["status"])
        for status, count in JobStore(self.client, self.settings).counts(self.owner).items():
            jobs.add_metric([status], count)
        yield jobs
        workers = GaugeMetricFamily("zdl_workers", "Workers with a live heartbeat, by queue", labels=["queue"])
        for queue in (self.settings.coordinator_queue, self.settings.blocks_queue):
            workers.add_metric([queue], len(alive_workers(self.client, self.settings, queue)))
        yield workers
        done = self.client.get(stats.iterations_key(self.settings, self.owner))
        yield CounterMetricFamily("zdl_iterations", "Training iterations done, all jobs", value=int(done or 0))
        yield _histogram(self.client, stats.block_seconds(self.settings), "zdl_gradient_block_seconds",
                         "Compute time of one gradient block group, as its worker measured it")
        yield _histogram(self.client, stats.fanout_overhead_seconds(self.settings), "zdl_fanout_overhead_seconds",
                         "Per iteration: gradient wall time minus the slowest block's compute time")


def _histogram(client: redis.Redis, hist: stats.RedisHistogram, name: str, doc: str) -> HistogramMetricFamily:
    buckets, total = hist.read(client)
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)
