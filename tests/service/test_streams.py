"""Bounded event streams: a limit per key (429 naming it), one Redis subscription per API process shared by
all of its streams, a maximum age after which the stream ends (the client reconnects), and 1,000 streams
opened and dropped leave the API's file descriptors and Redis's client count where they were.

The streams follow a job that stays queued: the API here is a process of its own on the session's Redis,
with its own key prefix and a coordinator queue no worker serves.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.service.conftest import AUTH, OTHER_KEY
from worker.cluster import processes
from worker.cluster.launcher import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.redis]

LIMIT = 4
MAX_AGE_S = 10
BODY = {"dataset": "mnist", "model": {"hidden_size": 4}, "training": {"iters": 5}}


@pytest.fixture(scope="module")
def stream_api(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, str]]:
    """(base URL, its Managed process, its key prefix): an API of its own whose jobs stay queued."""
    port = processes.free_port()
    prefix = f"zdl-streams-{time.time_ns()}"
    env = {**cluster.env, "ZDL_KEY_PREFIX": prefix, "ZDL_COORDINATOR_QUEUE": "zdl.nobody",
           "ZDL_MAX_STREAMS_PER_KEY": str(LIMIT), "ZDL_MAX_STREAM_S": str(MAX_AGE_S)}
    api = processes.start_api(port, Path(tmp_path_factory.mktemp("stream-api")), env)
    try:
        processes.wait_until(lambda: processes.port_open(port), 60, "the stream API", [api])
        yield f"http://127.0.0.1:{port}", api, prefix
    finally:
        processes.stop([api])


@pytest.fixture
def client(stream_api: tuple[str, Any, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stream_api[0], timeout=30, headers=AUTH) as c:
        yield c


def queued_job(client: httpx.Client) -> str:
    response = client.post("/v1/jobs", json=BODY)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


class Stream:
    """An open event stream, read an event at a time (a line iterator left unfinished would close it)."""

    def __init__(self, stack: ExitStack, client: httpx.Client, job_id: str) -> None:
        self.response = stack.enter_context(client.stream("GET", f"/v1/jobs/{job_id}/events"))
        self.status_code = self.response.status_code
        self.lines = self.response.iter_lines() if self.status_code == 200 else iter(())

    def next_event(self) -> dict[str, Any]:
        for line in self.lines:
            if line.startswith("data:"):
                return dict(json.loads(line[5:]))
        raise AssertionError("the stream ended without an event")


def redis_clients(cluster: LocalCluster) -> int:
    return int(redis.Redis.from_url(cluster.settings.redis_url).info("clients")["connected_clients"]) - 1  # us


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle(measure: Callable[[], tuple[int, int]], expected: tuple[int, int], timeout: float = 30.0) -> tuple[int, int]:
    """The measure once it equals `expected`, or whatever it is after `timeout` (streams close asynchronously)."""
    deadline = time.monotonic() + timeout
    while (now := measure()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return now


def test_a_key_over_its_stream_limit_is_429_and_others_still_stream(client, stream_api, cluster) -> None:
    job_id = queued_job(client)
    with ExitStack() as stack:
        held = [Stream(stack, client, job_id) for _ in range(LIMIT)]
        assert [r.status_code for r in held] == [200] * LIMIT
        assert all(r.next_event()["status"] == "queued" for r in held)
        over = client.get(f"/v1/jobs/{job_id}/events")
        assert over.status_code == 429 and f"ZDL_MAX_STREAMS_PER_KEY={LIMIT}" in over.json()["detail"]
        other_key = {"Authorization": f"Bearer {OTHER_KEY}"}
        with httpx.Client(base_url=stream_api[0], timeout=30, headers=other_key) as other:
            theirs = queued_job(other)
            theirs_stream = Stream(stack, other, theirs)
            assert theirs_stream.status_code == 200 and theirs_stream.next_event()["status"] == "queued"


def test_streams_share_one_subscription_and_each_gets_every_event(client, stream_api, cluster) -> None:
    job_id = queued_job(client)
    events_channel = f"{stream_api[2]}:job:{job_id}:events"
    main = redis.Redis.from_url(cluster.settings.redis_url)
    with ExitStack() as stack:
        streams = [Stream(stack, client, job_id) for _ in range(LIMIT)]
        for stream in streams:
            stream.next_event()
        assert main.pubsub_numsub(events_channel)[0][1] == 1  # one subscriber for the four streams
        main.publish(events_channel, json.dumps({"type": "progress", "iteration": 7}))
        assert [r.next_event()["iteration"] for r in streams] == [7] * LIMIT


def test_a_stream_ends_at_its_maximum_age_with_a_reconnect_hint(client) -> None:
    job_id = queued_job(client)
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        lines = list(response.iter_lines())  # ends by itself (ZDL_MAX_STREAM_S) while the job is queued
    assert any(line.startswith("retry:") for line in lines)
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"


def test_a_thousand_streams_opened_and_dropped_leave_descriptors_and_clients_flat(client, stream_api,
                                                                                  cluster) -> None:
    job_id = queued_job(client)
    pid = stream_api[1].pid

    def measure() -> tuple[int, int]:
        return descriptors(pid), redis_clients(cluster)

    def open_and_drop(count: int) -> None:
        opened = 0
        while opened < count:
            with ExitStack() as stack:
                batch = [Stream(stack, client, job_id) for _ in range(LIMIT)]
                ok = [r for r in batch if r.status_code == 200]  # a 429: the server has not yet seen a drop
                for stream in ok:
                    stream.next_event()
                opened += len(ok)

    open_and_drop(200)  # warm up as the test goes on: the API's connection pool reaches its working size
    before = settle(measure, measure())
    open_and_drop(1000)
    assert settle(measure, before) == before
