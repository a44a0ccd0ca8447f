"""Gang parts through shared memory (worker/gang/shared_parts.py), with the handshake on a real Redis and the
replicas in processes of their own: the parts arrive whole and in order, and replicas that cannot map
the segment make the gang fall back to the step Redis without leaving the segment behind."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis

from worker.gang.protocol import GangKeys
from worker.gang.shared_parts import SharedParts
from worker.state.transfer import StepData

SIZES = [5, 7, 3]
STEPS = 6


def part(replica: int, step: int) -> np.ndarray:
    return np.arange(SIZES[replica], dtype=np.float64) * (step + 1) + 1000.0 * replica + 1 / 3


def never() -> None:
    pass


def run_replica(url: str, prefix: str, replica: int, out: multiprocessing.Queue) -> None:
    """One replica's side of STEPS steps; puts (replica, [(step, {other: (seconds, values)}, last)]) in out."""
    with redis.Redis.from_url(url) as client:
        shared = SharedParts.connect(StepData(client, False), GangKeys(prefix), SIZES, replica, 60, never)
        assert shared is not None, f"replica {replica} fell back to Redis on one machine"
        seen = []
        for step in range(STEPS):
            shared.send(step, part(replica, step), 0.001 * step, replica == 0 and step == STEPS - 1)
            parts: dict[int, tuple[float, np.ndarray]] = {}
            last = shared.receive(step, parts, never)
            seen.append((step, {r: (s, v.tolist()) for r, (s, v) in parts.items()}, last))
        shared.close()
    out.put((replica, seen))


def test_replicas_on_one_machine_exchange_every_part_through_shared_memory(cluster) -> None:
    prefix = f"test:gang:{uuid.uuid4().hex}"
    out: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(target=run_replica,
                                                         args=(cluster.settings.step_url, prefix, r, out))
             for r in range(len(SIZES))]
    for proc in procs:
        proc.start()
    results = dict(out.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join(10)
        assert proc.exitcode == 0
    for replica, seen in results.items():
        assert [step for step, _, _ in seen] == list(range(STEPS))
        for step, parts, last in seen:
            assert sorted(parts) == [r for r in range(len(SIZES)) if r != replica]
            for other, (seconds, values) in parts.items():
                assert values == part(other, step).tolist() and seconds == 0.001 * step
            assert last is (replica != 0 and step == STEPS - 1)  # replica 0 ended the turn with its last part
    with redis.Redis.from_url(cluster.settings.step_url) as client:
        name = client.hget(f"{prefix}:shm", "name").decode()
        assert client.hmget(f"{prefix}:shm", ["r1", "r2"]) == [b"1", b"1"]
        assert 0 < client.ttl(f"{prefix}:shm") <= 60
    assert not Path("/dev/shm", name).exists()  # unlinked once everyone had mapped it


def test_a_replica_that_cannot_map_the_segment_makes_the_gang_use_redis(cluster) -> None:
    """As on two machines (or containers): replica 1 finds no such segment; both sides get None, and
    replica 0's segment is gone."""
    prefix = f"test:gang:{uuid.uuid4().hex}"
    keys = GangKeys(prefix)
    with redis.Redis.from_url(cluster.settings.step_url) as client:
        data = StepData(client, False)
        got: dict[str, object] = {}
        zero = threading.Thread(
            target=lambda: got.update(zero=SharedParts.connect(data, keys, SIZES[:2], 0, 60, never)))
        zero.start()
        name = None
        while name is None:
            name = client.hget(keys.shm, "name")
        assert Path("/dev/shm", name.decode()).exists()
        client.hset(keys.shm, "name", "zdl-test-elsewhere")  # what replica 1 on another machine would not find
        assert SharedParts.connect(data, keys, SIZES[:2], 1, 60, never) is None
        zero.join(10)
        assert got["zero"] is None and client.hget(keys.shm, "r1") == b"0"
        assert not Path("/dev/shm", name.decode()).exists()


def test_giving_up_while_waiting_for_the_others_leaves_no_segment(cluster) -> None:
    """Replica 0 waits for a replica that never comes; the turn is abandoned: it stops, and unlinks."""
    prefix = f"test:gang:{uuid.uuid4().hex}"
    calls = []

    def abandoned() -> None:
        calls.append(1)
        if len(calls) > 3:
            raise TimeoutError("the turn was abandoned")

    with redis.Redis.from_url(cluster.settings.step_url) as client:
        with pytest.raises(TimeoutError):
            SharedParts.connect(StepData(client, False), GangKeys(prefix), SIZES[:2], 0, 60, abandoned)
        name = client.hget(f"{prefix}:shm", "name").decode()
    assert not Path("/dev/shm", name).exists()
