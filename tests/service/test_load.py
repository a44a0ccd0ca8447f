"""Load on the session's cluster: many jobs at once, many pollers at once, and worker memory over many jobs."""

from __future__ import annotations

import asyncio
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

pytestmark = pytest.mark.slow

AUTH = {"Authorization": "Bearer test-key-7f3a"}
POLLERS, POLL_INTERVAL_S, POLL_SECONDS = 100, 0.5, 10.0


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all processes in its group (a Celery worker and its pool)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            if int(fields[2]) == pid:  # field 5 of stat: the process group
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss in pages
        except (OSError, IndexError, ValueError):
            continue
    return total


def test_20_jobs_at_once_then_memory_stays_flat(cluster, api, blocks, submit, wait_for, bits_equal) -> None:
    blocks(2)
    workers = [cluster.coordinator, *cluster.blocks]
    warmup = [submit(training={"seed": 100 + i})["id"] for i in range(2)]  # both coordinator pool processes
    for job_id in warmup:
        assert wait_for(job_id)["status"] == "succeeded"
    after_first = {w.name: tree_rss_bytes(w.pid) for w in workers}

    with ThreadPoolExecutor(20) as pool:  # 20 POSTs at the same moment
        jobs = list(pool.map(lambda i: submit(training={"seed": i, "batch_size": 10 + i % 3}), range(20)))
    assert len({j["id"] for j in jobs}) == 20
    done = [wait_for(j["id"], timeout=120) for j in jobs]
    assert [j["status"] for j in done] == ["succeeded"] * 20
    assert all(j["progress"]["iteration"] == 30 for j in done)
    assert all(bits_equal(api, j) for j in done)

    after_all = {w.name: tree_rss_bytes(w.pid) for w in workers}
    growth = {name: after_all[name] / after_first[name] - 1 for name in after_first}
    assert all(g <= 0.20 for g in growth.values()), {n: f"{g:+.1%}" for n, g in growth.items()}


async def poll(client: httpx.AsyncClient, path: str, until: float, errors: list[str]) -> int:
    """GET `path` every POLL_INTERVAL_S until `until`; returns how many 200s this poller got."""
    await asyncio.sleep(random.uniform(0, POLL_INTERVAL_S))  # spread the pollers over the interval
    answers = 0
    while time.monotonic() < until:
        began = time.perf_counter()
        try:
            response = await client.get(path)
            if response.status_code == 200:
                answers += 1
            else:
                errors.append(f"{response.status_code} {response.text[:100]}")
        except httpx.HTTPError as exc:
            errors.append(repr(exc))
        await asyncio.sleep(max(POLL_INTERVAL_S - (time.perf_counter() - began), 0))
    return answers


async def poll_all(url: str, path: str, seconds: float) -> tuple[list[int], list[str]]:
    """Answers per poller and errors of POLLERS clients each polling `path` for `seconds`."""
    errors: list[str] = []
    limits = httpx.Limits(max_connections=POLLERS, max_keepalive_connections=POLLERS)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10, limits=limits) as client:
        until = time.monotonic() + seconds
        answers = await asyncio.gather(*(poll(client, path, until, errors) for _ in range(POLLERS)))
    return list(answers), errors


def test_100_clients_polling_while_jobs_train(cluster, submit, wait_for, api) -> None:
    """No poller gets an error or goes unanswered while two jobs train. (Latency is a figure of the
    machine, measured by bench/load.py, not asserted here.)"""
    training = [submit(training={"iters": 100_000, "seed": i})["id"] for i in range(2)]
    try:
        wait_for(training[0], until=("running",))
        answers, errors = asyncio.run(poll_all(cluster.url, f"/v1/jobs/{training[0]}", POLL_SECONDS))
        assert api.get(f"/v1/jobs/{training[0]}").json()["status"] == "running"  # it trained all along
    finally:
        for job_id in training:
            api.post(f"/v1/jobs/{job_id}/cancel")
    assert not errors, errors[:5]
    assert min(answers) >= 3, f"a poller got only {min(answers)} answers in {POLL_SECONDS:.0f} s"


@pytest.mark.parametrize("grouping, kind", [("auto", "gang"), (3, "run")], ids=["gangs", "fanned-out"])
def test_two_long_jobs_take_turns_on_the_block_workers(cluster, blocks, submit, wait_for, api, grouping,
                                                       kind: str) -> None:
    """Two jobs on two block workers, as gangs (2 groups: a replica on each worker) or fanned out (3 groups:
    block loops): each hands the workers over when the other's wait (block_loop_slice_s), so neither starves;
    once both are cancelled, no loop, replica or queued start is left behind."""
    blocks(2)
    settings = cluster.settings
    # runs' loops and gangs' replicas live with the step data (read with SCAN: the service's user has no KEYS)
    steps = redis.Redis.from_url(settings.step_url)
    broker = redis.Redis.from_url(settings.broker)  # the Celery queue that starts them
    jobs = [submit(training={"iters": 100_000, "seed": i}, gradient={"blocks": grouping})["id"] for i in range(2)]
    loops = [f"{settings.key_prefix}:{kind}:{job_id}:*:loops" for job_id in jobs]
    try:
        for job_id in jobs:
            wait_for(job_id, until=("running",))
        first = [api.get(f"/v1/jobs/{j}").json()["progress"]["iteration"] for j in jobs]
        seen_loops = [False, False]  # a job's loops hash may be empty for a moment when its loops hand over
        until = time.monotonic() + 4 * settings.block_loop_slice_s
        while time.monotonic() < until:
            seen_loops = [seen or any(steps.scan_iter(p)) for seen, p in zip(seen_loops, loops, strict=True)]
            time.sleep(0.05)
        later = [api.get(f"/v1/jobs/{j}").json()["progress"]["iteration"] for j in jobs]
    finally:
        for job_id in jobs:
            api.post(f"/v1/jobs/{job_id}/cancel")
    assert all(b > a for a, b in zip(first, later, strict=True)), (first, later)
    assert all(seen_loops), f"the step Redis never showed a running job's {kind} loops hash: {seen_loops}"
    for job_id in jobs:
        assert wait_for(job_id)["status"] == "cancelled"
    deadline = time.monotonic() + 10 * settings.block_poll_s
    while any(any(steps.scan_iter(pattern)) for pattern in loops) or broker.llen(settings.blocks_queue):
        assert time.monotonic() < deadline, "block loops, replicas or their starts were left behind"
        time.sleep(0.05)
