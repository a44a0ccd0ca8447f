"""The scheduler on a real Redis: keys take turns, each under its running limit, within the coordinators' slots.

`dispatch` is called directly (a coordinator's heartbeat and the API call it the same way), with coordinator
heartbeats written as live workers write them; the jobs it sends are collected instead of run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from worker.scheduling import heartbeat, scheduler
from worker.settings import Settings
from worker.state import keys
from worker.state.job_store import JobStore

SPEC: dict[str, Any] = {"dataset": "mnist", "model": {"hidden_size": 4}, "training": {"iters": 5}}


@pytest.fixture
def world(cluster) -> Iterator[tuple[redis.Redis, Settings, JobStore]]:
    """The session Redis under a key prefix of this test's own, with nothing in it."""
    settings = cluster.settings.model_copy(update={"key_prefix": f"zdl-sched-{time.time_ns()}",
                                                   "max_running_jobs_per_key": 2})
    client = redis.Redis.from_url(settings.redis_url)
    yield client, settings, JobStore(client, settings)
    for key in client.scan_iter(f"{settings.key_prefix}:*"):
        client.delete(key)


def coordinators(client: redis.Redis, settings: Settings, slots: int) -> None:
    """One live coordinator worker with `slots` slots."""
    heartbeat.beat(client, settings, "coordinator@test", [settings.coordinator_queue], slots)


def start(store: JobStore, job_ids: list[str]) -> None:
    for job_id in job_ids:
        assert store.transition(job_id, "running", ["queued"])


def test_keys_take_turns_and_the_slots_are_never_exceeded(world) -> None:
    client, settings, store = world
    a = [store.create(SPEC, "owner-a")[0] for _ in range(5)]
    b = [store.create(SPEC, "owner-b")[0] for _ in range(2)]
    sent: list[str] = []
    assert scheduler.dispatch(client, settings, sent.append) == []  # no coordinator alive: nothing can run
    coordinators(client, settings, slots=3)
    assert scheduler.dispatch(client, settings, sent.append) == [a[0], b[0], a[1]]  # a came first, then turns
    assert scheduler.dispatch(client, settings, sent.append) == []  # the 3 slots are taken
    start(store, [a[0], b[0], a[1]])
    store.finish(a[0], "succeeded")
    # a slot is free; a has 1 running and b has 1: b was served less recently than a
    assert scheduler.dispatch(client, settings, sent.append) == [b[1]]
    assert sent == [a[0], b[0], a[1], b[1]]


def test_a_key_at_its_running_limit_waits_while_others_run(world) -> None:
    client, settings, store = world
    coordinators(client, settings, slots=10)
    a = [store.create(SPEC, "owner-a")[0] for _ in range(4)]
    sent = scheduler.dispatch(client, settings, lambda job_id: None)
    assert sent == a[:2]  # max_running_jobs_per_key = 2, although 8 slots are still free
    late = store.create(SPEC, "owner-b")[0]
    assert scheduler.dispatch(client, settings, lambda job_id: None) == [late]  # b starts at once


def test_a_cancelled_or_deleted_job_is_never_sent(world) -> None:
    client, settings, store = world
    first, second = store.create(SPEC, "owner-a")[0], store.create(SPEC, "owner-a")[0]
    store.request_cancel(first)
    coordinators(client, settings, slots=4)
    assert scheduler.dispatch(client, settings, lambda job_id: None) == [second]
    assert client.zcard(keys.pending(settings, "owner-a")) == 0
    assert client.zrange(keys.pending(settings), 0, -1) == []  # the key left the round: nothing pending


def test_a_lost_dispatch_is_sent_again(world, monkeypatch) -> None:
    client, settings, store = world
    coordinators(client, settings, slots=1)
    job = store.create(SPEC, "owner-a")[0]
    assert scheduler.dispatch(client, settings, lambda job_id: None) == [job]  # its message is lost
    again: list[str] = []
    scheduler.dispatch(client, settings, again.append)
    assert again == []  # not yet: it may just be starting
    monkeypatch.setattr(scheduler, "DISPATCH_TIMEOUT_S", 0.0)
    scheduler.dispatch(client, settings, again.append)
    assert again == [job]
    start(store, [job])
    assert client.zcard(keys.dispatched(settings)) == 0  # started: no longer waiting to start
