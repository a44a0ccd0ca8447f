"""Redis replies are narrowed to bytes where they arrive (worker/state/replies.py): a client built to return text
fails there, naming the cause, instead of deep inside code that decodes or unpacks bytes."""

from __future__ import annotations

import pytest
import redis

from worker.scheduling.heartbeat import alive_workers
from worker.state.job_store import JobStore

pytestmark = pytest.mark.slow


def test_the_service_reads_its_redis_as_bytes(cluster, submit, wait_for) -> None:
    job = wait_for(submit(training={"iters": 2})["id"])
    client = redis.Redis.from_url(cluster.settings.redis_url)
    record = JobStore(client, cluster.settings).get(job["id"])
    assert record is not None and record["status"] == "succeeded"
    assert alive_workers(client, cluster.settings, cluster.settings.blocks_queue)


def test_a_client_that_decodes_text_fails_at_the_edge(cluster, submit, wait_for) -> None:
    job = wait_for(submit(training={"iters": 2})["id"])
    text_client = redis.Redis.from_url(cluster.settings.redis_url, decode_responses=True)
    with pytest.raises(TypeError, match="decode_responses"):
        JobStore(text_client, cluster.settings).get(job["id"])
    with pytest.raises(TypeError, match="decode_responses"):
        alive_workers(text_client, cluster.settings, cluster.settings.blocks_queue)
