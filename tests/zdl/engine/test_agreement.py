"""`numerical` (incremental) agrees with `numerical-reference` (the book's procedure) to 1e-9 on every entry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zdl.engine import Block, block_gradient, gradient, partition
from zdl.nets import TwoLayerNet

TOLERANCE = 1e-9


def make_case(seed: int, input_size: int, hidden: int, output: int, batch: int, *, density: float = 0.2,
              weight_std: float = 0.01, pixel_levels: int | None = 256) -> tuple[dict, np.ndarray, np.ndarray]:
    """Random params and an MNIST-like batch: `density` of pixels non-zero, values k/255 (or continuous)."""
    rng = np.random.default_rng(seed)
    params = TwoLayerNet(input_size, hidden, output, weight_std, seed=seed).params
    params["b1"] = weight_std * rng.standard_normal(hidden)
    params["b2"] = weight_std * rng.standard_normal(output)
    values = rng.integers(1, pixel_levels, (batch, input_size)) / (pixel_levels - 1) if pixel_levels \
        else rng.random((batch, input_size))
    x = np.where(rng.random((batch, input_size)) < density, values, 0.0)
    return params, x, rng.integers(0, output, batch)


def assert_agrees(params: dict, x: np.ndarray, t: np.ndarray) -> None:
    fast = gradient(params, x, t, "numerical")
    ref = gradient(params, x, t, "numerical-reference")
    for key in fast:
        np.testing.assert_allclose(fast[key], ref[key], rtol=0, atol=TOLERANCE, err_msg=key)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    input_size=st.integers(1, 30),
    hidden=st.integers(1, 12),
    output=st.integers(2, 12),
    batch=st.integers(1, 12),
    density=st.sampled_from([0.0, 0.2, 0.5, 1.0]),
    weight_std=st.sampled_from([1e-6, 0.01, 1.0, 3.0]),
    pixel_levels=st.sampled_from([None, 3, 256]),
)
def test_agrees_for_any_sizes_and_data(seed, input_size, hidden, output, batch, density, weight_std, pixel_levels):
    assert_agrees(*make_case(seed, input_size, hidden, output, batch, density=density, weight_std=weight_std,
                             pixel_levels=pixel_levels))


@pytest.mark.parametrize(
    "case",
    [
        dict(batch=1),  # one-sample batch
        dict(density=0.0),  # all-zero batch: the W1 gradient is exactly zero
        dict(density=1.0, pixel_levels=None),  # dense, continuous inputs: no shared (sample, value) pairs
        dict(weight_std=5.0),  # large weights: saturated sigmoids, peaked softmax
        dict(weight_std=1e-8),  # tiny weights
    ],
    ids=["one-sample", "all-zero", "dense", "large-weights", "tiny-weights"],
)
def test_agrees_on_edge_cases(case):
    settings_ = dict(seed=3, input_size=40, hidden=7, output=10, batch=16) | case
    params, x, t = make_case(**settings_)
    assert_agrees(params, x, t)
    if case.get("density") == 0.0:
        assert not np.any(gradient(params, x, t)["W1"])


def test_agrees_on_real_mnist_batch(mnist_small):
    """784-50-10 on a real batch of 100: every entry of b1, W2, b2 and 600 W1 entries in six blocks."""
    (x_train, t_train), _ = mnist_small
    rng = np.random.default_rng(0)
    mask = rng.choice(len(x_train), 100)
    x, t = x_train[mask], t_train[mask]
    params = TwoLayerNet(784, 50, 10, seed=0).params
    shapes = {k: v.shape for k, v in params.items()}
    blocks = [b for b in partition(shapes, n_blocks=4) if b.param != "W1"]
    # rows near the middle of the image (many non-zero pixels), an edge row, and block edges inside rows
    blocks += [Block("W1", s, s + 100) for s in (0, 10_025, 14_010, 19_950, 23_333, 39_100)]
    for block in blocks:
        fast = block_gradient(block, params, x, t, "numerical")
        ref = block_gradient(block, params, x, t, "numerical-reference")
        np.testing.assert_allclose(fast, ref, rtol=0, atol=TOLERANCE, err_msg=str(block))
        assert np.any(fast != 0) or block.param == "W1"


def test_agrees_with_backprop_to_the_size_of_the_log_delta(mnist_small):
    """Independent check: backprop differs only by the +1e-7 in the log and the O(h^2) truncation."""
    (x_train, t_train), _ = mnist_small
    x, t = x_train[:50], t_train[:50]
    net = TwoLayerNet(784, 50, 10, seed=1)
    fast = gradient(net.params, x, t, "numerical")
    exact = net.gradient(x, t)
    for key in fast:
        np.testing.assert_allclose(fast[key], exact[key], rtol=0, atol=1e-6, err_msg=key)
