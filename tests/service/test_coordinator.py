"""The fan-out gradient against the real block workers: exact results, lost blocks re-sent, errors surfaced."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from worker.blocks import BlockRequest
from worker.celery_app import COMPUTE_BLOCKS, create_app
from worker.coordinator import BlockFailed, FanoutGradient
from zdl.engine import block_groups, gradient, param_shapes
from zdl.nets import TwoLayerNet


@pytest.fixture
def step_inputs(local_data):
    (x, t), _ = local_data
    net = TwoLayerNet(784, 6, 10, 0.01, seed=5)
    return net.params, x[:16], t[:16]


@pytest.fixture
def fanout_for(cluster):
    """`fanout_for(n_groups, drop=set(), **settings)`: a FanoutGradient sending through Celery to the
    session's block workers, dropping the first send of the groups in `drop` (a lost message)."""
    app = create_app(cluster.settings)
    client = redis.Redis.from_url(cluster.settings.redis_url)

    def make(n_groups: int, params, method: str = "numerical", drop: frozenset[int] = frozenset(), **overrides):
        dropped: set[int] = set()

        def send(requests: list[BlockRequest]) -> None:
            for request in requests:
                if request.group in drop and request.group not in dropped:
                    dropped.add(request.group)
                    continue
                app.send_task(COMPUTE_BLOCKS, args=[request.to_dict()], queue=cluster.settings.blocks_queue)

        settings = cluster.settings.model_copy(update=overrides)
        return FanoutGradient(client, settings, f"test-{n_groups}-{method}", param_shapes(params), method, n_groups,
                              send), dropped

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


def test_a_lost_block_is_sent_again(fanout_for, step_inputs) -> None:
    params, x, t = step_inputs
    fanout, dropped = fanout_for(2, params, drop=frozenset({1}), block_timeout_s=0.3)
    got = fanout(params, x, t)
    assert dropped == {1}
    expected = gradient(params, x, t, "numerical")
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    assert fanout.last_wall_s >= 0.3
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
