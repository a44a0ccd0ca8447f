"""The fan-out gradient against the real block workers: exact results, lost loops replaced, errors surfaced."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest
import redis

from worker.celery_app.app import SERVE_BLOCKS, create_app
from worker.fanout.block_loop import LoopStart
from worker.fanout.gradient import FanoutGradient
from worker.state.connection import step_data
from worker.state.errors import BlockFailed
from worker.state.keys import RunKeys
from zdl.engine import block_groups, gradient, param_shapes
from zdl.nets import TwoLayerNet


@pytest.fixture
def step_inputs(local_data):
    (x, t), _ = local_data
    net = TwoLayerNet(784, 6, 10, 0.01, seed=5)
    return net.params, x[:16], t[:16]


@pytest.fixture
def fanout_for(cluster):
    """`fanout_for(n_groups, drop=0, **settings)`: a FanoutGradient starting block loops through Celery on the
    session's block workers, dropping the first `drop` loop starts (lost messages); returns it and the
    list of dropped starts."""
    app = create_app(cluster.settings)
    client = redis.Redis.from_url(cluster.settings.redis_url)

    def make(n_groups: int, params, method: str = "numerical", drop: int = 0, **overrides):
        dropped: list[LoopStart] = []

        def send(starts: list[LoopStart]) -> None:
            for start in starts:
                if len(dropped) < drop:
                    dropped.append(start)
                    continue
                app.send_task(SERVE_BLOCKS, args=[start.to_dict()], queue=cluster.settings.blocks_queue)

        settings = cluster.settings.model_copy(update=overrides)
        job_id = f"test-{n_groups}-{method}-{uuid.uuid4().hex[:8]}"  # loops of an earlier test never serve this one
        return FanoutGradient(client, step_data(settings), settings, job_id, param_shapes(params),
                              method, n_groups, send), dropped

    yield make
    client.close()


@pytest.mark.parametrize("n_groups", [1, 2, 5, 9])  # 9 groups > 6 hidden units: split differently
def test_equals_the_in_process_gradient(fanout_for, step_inputs, n_groups: int) -> None:
    params, x, t = step_inputs
    fanout, _ = fanout_for(n_groups, params)
    expected = gradient(params, x, t, "numerical")
    for _ in range(2):  # a second step reuses nothing of the first
        got = fanout(params, x, t)
        assert all(np.array_equal(got[k], expected[k]) for k in expected)
    assert fanout.last_wall_s >= fanout.last_block_max_s > 0
    assert fanout.n_tasks == len(block_groups(param_shapes(params), n_groups))
    fanout.close()


def test_one_loop_serves_every_group(fanout_for, step_inputs, blocks) -> None:
    blocks(1)
    params, x, t = step_inputs
    fanout, _ = fanout_for(5, params)
    expected = gradient(params, x, t, "numerical")
    for _ in range(3):
        got = fanout(params, x, t)
        assert all(np.array_equal(got[k], expected[k]) for k in expected)
    assert fanout.loops_started == 1  # one worker: one loop, kept from step to step
    fanout.close()


def test_loops_are_kept_across_steps_and_end_on_close(fanout_for, step_inputs, cluster) -> None:
    params, x, t = step_inputs
    fanout, _ = fanout_for(2, params)
    for _ in range(5):
        fanout(params, x, t)
    assert fanout.loops_started == 2  # two workers: two loops, started once
    loops = RunKeys.of(cluster.settings, fanout.job_id).loops
    assert cluster.settings.step_redis_url  # the run's keys are on the step Redis, the Celery queue is not
    with redis.Redis.from_url(cluster.settings.step_redis_url) as data, \
            redis.Redis.from_url(cluster.settings.redis_url) as main:
        assert data.hlen(loops) == 2
        fanout.close()
        assert data.hlen(loops) == 0
        assert main.llen(cluster.settings.blocks_queue) == 0 and not main.exists(loops)


def test_lost_loop_starts_are_sent_again(fanout_for, step_inputs) -> None:
    params, x, t = step_inputs
    fanout, dropped = fanout_for(2, params, drop=2, block_timeout_s=0.3)
    got = fanout(params, x, t)
    assert len(dropped) == 2
    expected = gradient(params, x, t, "numerical")
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    assert fanout.last_wall_s >= 0.3
    assert fanout.loops_started == 4
    fanout.close()


def test_a_block_error_fails_the_step(fanout_for, step_inputs) -> None:
    params, x, t = step_inputs
    fanout, _ = fanout_for(2, params, method="adam")
    with pytest.raises(BlockFailed, match="gradient method must be one of"):
        fanout(params, x, t)
    fanout.close()


def test_json_only_and_late_ack(cluster) -> None:
    conf = create_app(cluster.settings).conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.result_accept_content == ["json"]
    assert conf.task_acks_late and conf.worker_prefetch_multiplier == 1


def test_an_unexpected_error_in_a_block_loop_fails_the_step_at_once(cluster, step_inputs, monkeypatch) -> None:
    """A bug (here: the engine raising something no one expects) in a block loop, run in this process against
    the real Redis servers, reaches the coordinator as a failed group within seconds, not after the 600 s
    the step keys live."""
    from worker.fanout import block_loop, blocks

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the engine at /home/someone/secret/path.py")

    monkeypatch.setattr(blocks.BlockGroup, "gradient", broken)
    client = redis.Redis.from_url(cluster.settings.redis_url)
    data = step_data(cluster.settings)
    loops: list[threading.Thread] = []

    def send(starts: list[LoopStart]) -> None:
        for start in starts:
            loop = threading.Thread(target=block_loop.serve, args=(client, data, cluster.settings, start, "here@test"))
            loop.start()
            loops.append(loop)

    params, x, t = step_inputs
    fanout = FanoutGradient(client, data, cluster.settings, f"test-bug-{uuid.uuid4().hex[:8]}", param_shapes(params),
                            "numerical", 2, send)
    began = time.monotonic()
    with pytest.raises(BlockFailed, match="internal error \\(RuntimeError\\)") as failed:
        fanout(params, x, t)
    assert time.monotonic() - began < 5.0
    assert "/home" not in str(failed.value)  # the owner reads this; the path stays in the worker's log
    fanout.close()
    for loop in loops:
        loop.join(timeout=10)
        assert not loop.is_alive()


def test_a_malformed_spec_fails_its_job_within_a_second(cluster) -> None:
    """A record whose spec no run can read (written straight into Redis, as a bug or an old version could)."""
    from worker.state.job_store import JobStore

    store = JobStore(redis.Redis.from_url(cluster.settings.redis_url), cluster.settings)
    spec = {"dataset": "mnist", "model": {"hidden_size": "many"}, "training": {"iters": 5},
            "gradient": {"method": "numerical"}}
    job_id, _ = store.create(spec, "an-owner-of-its-own")
    began = time.monotonic()
    while (record := store.get(job_id))["status"] in ("queued", "running"):
        # a coordinator's next heartbeat (every 0.3 s here) dispatches it; its coordinator then has a second
        assert time.monotonic() - began < cluster.settings.heartbeat_interval_s + 1.0, record
        time.sleep(0.01)
    assert record["status"] == "failed" and "malformed" in record["error"], record
