"""A Redis filled to its last byte by others: the writes that end, cancel or remove work, heartbeats and
leases still succeed; admission refuses new work past the high-water mark, saying how much room is left."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.service.filling import at_maxmemory, fill_to_the_last_byte
from worker.cluster import processes
from worker.scheduling.heartbeat import alive_workers, beat
from worker.scheduling.recovery import Lease
from worker.settings import Settings
from worker.state import headroom, keys
from worker.state.job_store import JobStore

pytestmark = pytest.mark.redis

BODY = {"dataset": "mnist", "model": {"hidden_size": 4}, "training": {"iters": 5}}


@pytest.fixture
def tiny_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    """A Redis of 4 MB that refuses writes beyond it (noeviction), as the cluster's are configured."""
    port = processes.free_port()
    server = processes.start_redis(port, tmp_path / "data", tmp_path / "logs", persist=False, maxmemory_mb=4)
    url = f"redis://127.0.0.1:{port}/0"
    processes.wait_until(lambda: processes.redis_ready(url), 20, "redis", [server])
    with redis.Redis.from_url(url) as client:
        yield client
    processes.stop([server])


@pytest.fixture
def settings() -> Settings:
    return Settings(redis_reserve_mb=0.5, heartbeat_ttl_s=5.0)


def test_ending_writes_succeed_on_a_redis_full_to_the_last_byte(tiny_redis: redis.Redis, settings: Settings) -> None:
    store = JobStore(tiny_redis, settings)
    queued, _ = store.create(BODY, "owner-a", reserved_bytes=100)
    running, _ = store.create(BODY, "owner-a", reserved_bytes=100)
    finished, _ = store.create(BODY, "owner-a", "idem-1", reserved_bytes=100)
    assert store.transition(running, "running", ["queued"]) and store.fail(finished, "made to fail")
    fill_to_the_last_byte(tiny_redis)
    assert at_maxmemory(tiny_redis)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        tiny_redis.hset(store.keys(running).record, "probe", 1)  # what any ordinary write meets now

    beat(tiny_redis, settings, "worker@host", ["zdl.blocks"], slots=2)
    assert alive_workers(tiny_redis, settings, "zdl.blocks") == {"worker@host"}
    lease = Lease(tiny_redis, settings, running)
    assert lease.acquire()
    lease.release()
    cancelled = store.request_cancel(queued)
    assert cancelled is not None and cancelled["status"] == "cancelled"
    flagged = store.request_cancel(running)
    assert flagged is not None and flagged["cancel_requested"] == 1 and flagged["status"] == "running"
    assert store.fail(running, "the store is full")
    assert store.get(running)["error"] == "the store is full"  # type: ignore[index]
    assert not store.transition(running, "succeeded", ["running"])  # the guard holds: failed stays failed
    assert store.delete(finished) == "deleted"
    assert store.get(finished) is None and not tiny_redis.exists(keys.idempotency(settings, "owner-a", "idem-1"))
    assert tiny_redis.zscore(keys.owner_index(settings, "owner-a"), finished) is None
    assert int(tiny_redis.get(keys.owner_bytes(settings, "owner-a")) or 0) == 200
    assert store.counts("owner-a") == {"queued": 0, "running": 0, "succeeded": 0, "failed": 1, "cancelled": 1}


def test_admission_stops_at_the_high_water_mark_and_says_how_to_free_room(tiny_redis: redis.Redis) -> None:
    settings = Settings(redis_high_water=0.5, redis_reserve_mb=0)
    headroom.check_room(tiny_redis, settings, 1000)  # an empty store has room
    while headroom.memory(tiny_redis).used < 0.5 * 4 * 2**20:
        tiny_redis.set(f"other:{tiny_redis.dbsize()}", b"x" * 65536)
    with pytest.raises(headroom.StoreFull) as refused:
        headroom.check_room(tiny_redis, settings, 1000)
    message = str(refused.value)
    assert "ZDL_REDIS_HIGH_WATER" in message and "DELETE /v1/jobs/{id}" in message
    assert "MiB used of the 2.0 MiB" in message


def test_the_reserve_is_given_up_for_results_and_put_back_when_there_is_room(tiny_redis: redis.Redis,
                                                                             settings: Settings) -> None:
    assert headroom.refill_reserve(tiny_redis, settings)
    assert tiny_redis.strlen(headroom.reserve_key(settings)) == int(0.5 * 2**20)
    store = JobStore(tiny_redis, settings)
    job, _ = store.create(BODY, "owner-b", reserved_bytes=100)
    assert store.transition(job, "running", ["queued"])
    fill_to_the_last_byte(tiny_redis)
    assert store.finish(job, "succeeded", weights=b"w" * 100_000, history={"loss": [1.0]})
    assert store.get(job)["status"] == "succeeded" and store.weights(job) == b"w" * 100_000  # type: ignore[index]
    assert not tiny_redis.exists(headroom.reserve_key(settings))
    assert not headroom.refill_reserve(tiny_redis, settings)  # no room for it yet
    for key in tiny_redis.scan_iter("filler:*"):
        tiny_redis.delete(key)
    assert headroom.refill_reserve(tiny_redis, settings)


def test_quotas_that_cannot_all_fit_are_named(tiny_redis: redis.Redis) -> None:
    settings = Settings(max_stored_mb_per_key=2.0)
    assert headroom.quota_warning(tiny_redis, settings, 1) is None  # 2 MiB fits under 0.85 x 4 MiB
    warning = headroom.quota_warning(tiny_redis, settings, 3)
    assert warning is not None and "3 API keys x ZDL_MAX_STORED_MB_PER_KEY=2 MiB = 6 MiB" in warning
