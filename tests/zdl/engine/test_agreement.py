"""`numerical` agrees with `numerical-reference` (the book's procedure) to 1e-9 on every entry, on both kernels.

The reference's own rounding is about 1e-12 (a loss near 2.3 rounded to 1e-16, divided by 2h = 2e-4), so
1e-9 is the engine's promise, not the gap; the gap between the two kernels is checked at its real size.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zdl.engine import Block, block_gradient, blocks_gradient, gradient, partition
from zdl.engine.kernel import IMPLEMENTATIONS
from zdl.nets import TwoLayerNet

TOLERANCE = 1e-9
#: numba vs numpy: different exp/log/log1p evaluations and a differently ordered forward pass; measured
#: up to 3.7e-12 (large weights), 1.6e-12 (unnormalized Fashion-MNIST), 6e-13 (MNIST 784-50-10).
KERNEL_GAP = 1e-11


def make_case(seed: int, input_size: int, hidden: int, output: int, batch: int, *, density: float = 0.2,
              weight_std: float = 0.01, pixel_levels: int | None = 256, scale: float = 1.0):
    """Random params and an MNIST-like batch: `density` of pixels non-zero, values k/255 (or continuous)."""
    rng = np.random.default_rng(seed)
    params = TwoLayerNet(input_size, hidden, output, weight_std, seed=seed).params
    params["b1"] = weight_std * rng.standard_normal(hidden)
    params["b2"] = weight_std * rng.standard_normal(output)
    values = rng.integers(1, pixel_levels, (batch, input_size)) / (pixel_levels - 1) if pixel_levels \
        else rng.random((batch, input_size))
    x = scale * np.where(rng.random((batch, input_size)) < density, values, 0.0)
    return params, x, rng.integers(0, output, batch)


def assert_agrees(params: dict, x: np.ndarray, t: np.ndarray, kernel: str, atol: float = TOLERANCE) -> None:
    fast = gradient(params, x, t, "numerical", kernel=kernel)
    ref = gradient(params, x, t, "numerical-reference")
    for key in fast:
        np.testing.assert_allclose(fast[key], ref[key], rtol=0, atol=atol, err_msg=key)


def one_hot(t: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes)[t]


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
    case = make_case(seed, input_size, hidden, output, batch, density=density, weight_std=weight_std,
                     pixel_levels=pixel_levels)
    for kernel in IMPLEMENTATIONS:
        assert_agrees(*case, kernel)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    hidden=st.sampled_from([1, 7, 64, 300]),
    batch=st.integers(1, 4),
    data=st.sampled_from(["mnist", "fashion", "fashion-unnormalized", "dense"]),
    weight_std=st.sampled_from([0.01, 0.5, 3.0]),  # 0.5 and 3.0 take the exact-exp branch for some units
    labels=st.sampled_from(["index", "one-hot"]),
    chunks=st.sampled_from(["default", "tiny"]),
)
def test_agrees_on_real_data_over_the_regime(mnist_small, fashion, tiny_chunks, seed, hidden, batch, data,
                                             weight_std, labels, chunks):
    """Real MNIST, dense Fashion-MNIST (also 0..255), continuous dense inputs; up to 300 hidden units;
    one-hot labels; and chunks of one sample, so that every chunked path and its running sums are used."""
    rng = np.random.default_rng(seed)
    (x_all, t_all), _ = fashion if data.startswith("fashion") else mnist_small
    mask = rng.choice(len(x_all), batch)
    x, t = x_all[mask].astype(np.float64), t_all[mask]
    if data == "fashion-unnormalized":
        x = x * 255
    if data == "dense":
        x = rng.random(x.shape)
    params = TwoLayerNet(784, hidden, 10, weight_std, seed=seed).params
    params["b1"] = weight_std * rng.standard_normal(hidden)
    target = one_hot(t, 10) if labels == "one-hot" else t
    # every entry of b1, W2, b2; whole W1 rows of three pixels that are non-zero in the batch (the
    # reference costs two forward passes per entry)
    shapes = {k: v.shape for k, v in params.items()}
    blocks = [b for b in partition(shapes, n_blocks=1) if b.param != "W1"]
    inked = np.flatnonzero(x.any(axis=0))
    rows = rng.choice(inked, min(3, len(inked)), replace=False)
    blocks += [Block("W1", int(i) * hidden, (int(i) + 1) * hidden) for i in rows]
    refs = [block_gradient(b, params, x, target, "numerical-reference") for b in blocks]
    for kernel in IMPLEMENTATIONS:
        with tiny_chunks() if chunks == "tiny" else nullcontext():
            fast = blocks_gradient(blocks, params, x, target, "numerical", kernel=kernel)
        for block, got, ref in zip(blocks, fast, refs, strict=True):
            np.testing.assert_allclose(got, ref, rtol=0, atol=TOLERANCE, err_msg=f"{kernel} {block}")


@pytest.mark.parametrize(
    "case",
    [
        dict(batch=1),  # one-sample batch
        dict(density=0.0),  # all-zero batch: the W1 gradient is exactly zero
        dict(density=1.0, pixel_levels=None),  # dense, continuous inputs: no shared (sample, value) pairs
        dict(weight_std=5.0),  # large weights: saturated sigmoids, peaked softmax, the exact-exp branch
        dict(density=0.5, scale=255.0, weight_std=0.5),  # unnormalized pixels: shifts of up to 0.0255
        dict(hidden=1024, batch=2, input_size=20, output=10),  # the largest admitted hidden size
    ],
    ids=["one-sample", "all-zero", "dense", "large-weights", "unnormalized", "hidden-1024"],
)
def test_agrees_on_edge_cases(case, kernel):
    settings_ = dict(seed=3, input_size=40, hidden=7, output=10, batch=16) | case
    params, x, t = make_case(**settings_)
    assert_agrees(params, x, t, kernel)
    if case.get("density") == 0.0:
        assert not np.any(gradient(params, x, t, kernel=kernel)["W1"])


def test_tiny_weights_agree_with_backprop_relative_to_their_size(mnist_small, kernel):
    """Weights of std 1e-8 make W1's gradient about 1e-10, below the reference's own rounding (1e-12 after
    /2h is not small against it): compared with backprop instead, relative to the largest entry."""
    (x_train, t_train), _ = mnist_small
    net = TwoLayerNet(784, 20, 10, 1e-8, seed=4)
    x, t = x_train[:30], t_train[:30]
    fast = gradient(net.params, x, t, kernel=kernel)
    exact = net.gradient(x, t)
    for key in fast:
        scale = np.abs(exact[key]).max()
        assert scale > 0
        # measured 1.3e-4 of the largest entry for W1 and b1 (about 7e-13: the rounding of each sample's loss
        # difference, 1e-16 / 2h / N * sqrt(N)), 1.3e-10 for W2 and b2 (h^2 truncation); the reference is
        # ten times further off on W1 (1.4e-3)
        np.testing.assert_allclose(fast[key], exact[key], rtol=0, atol=3e-4 * scale, err_msg=key)


def test_kernels_agree_far_below_the_tolerance(mnist_small, fashion):
    """The three kernels are not bit-identical but agree to about 1e-12 (KERNEL_GAP): the compiled and
    NumPy evaluated kernels, and the closed form (the evaluated kernel its second oracle)."""
    cases = [(mnist_small, 50, 0.01, 1.0), (fashion, 300, 0.01, 1.0), (fashion, 40, 1.0, 255.0),
             (mnist_small, 30, 3.0, 1.0)]
    for (train, _), hidden, std, scale in cases:
        x, t = train[0][:40] * scale, train[1][:40]
        params = TwoLayerNet(784, hidden, 10, std, seed=1).params
        numba = gradient(params, x, t, kernel="numba")
        numpy = gradient(params, x, t, kernel="numpy")
        closed = gradient(params, x, t, kernel="closed-form")
        for key in numba:
            np.testing.assert_allclose(numba[key], numpy[key], rtol=0, atol=KERNEL_GAP, err_msg=key)
            np.testing.assert_allclose(closed[key], numba[key], rtol=0, atol=KERNEL_GAP, err_msg=key)


def test_agrees_on_real_mnist_batch(mnist_small, kernel):
    """784-50-10 on a real batch of 100: every entry of b1, W2, b2 and 600 W1 entries in six blocks."""
    (x_train, t_train), _ = mnist_small
    rng = np.random.default_rng(0)
    mask = rng.choice(len(x_train), 100)
    x, t = x_train[mask], t_train[mask]
    params = TwoLayerNet(784, 50, 10, seed=0).params
    shapes = {k: v.shape for k, v in params.items()}
    blocks = [b for b in partition(shapes, n_blocks=4) if b.param != "W1"]
    # rows in the middle of the image (many non-zero pixels), and block edges inside rows
    blocks += [Block("W1", s, s + 100) for s in (20_300, 18_925, 23_125, 16_210, 25_640, 21_733)]
    for block in blocks:
        fast = block_gradient(block, params, x, t, "numerical", kernel=kernel)
        ref = block_gradient(block, params, x, t, "numerical-reference")
        np.testing.assert_allclose(fast, ref, rtol=0, atol=TOLERANCE, err_msg=str(block))
        assert np.count_nonzero(fast) > block.size // 2, f"{block} holds mostly zeros: a weak comparison"


def test_agrees_with_backprop_to_the_truncation_error(mnist_small, kernel):
    """Independent check: backprop (with the +1e-7's factor, so the exact gradient of the same loss)
    differs from central differences by their O(h^2) truncation, measured 1.24e-10 on this case."""
    (x_train, t_train), _ = mnist_small
    x, t = x_train[:50], t_train[:50]
    net = TwoLayerNet(784, 50, 10, seed=1)
    fast = gradient(net.params, x, t, "numerical", kernel=kernel)
    exact = net.gradient(x, t)
    for key in fast:
        np.testing.assert_allclose(fast[key], exact[key], rtol=0, atol=2e-10, err_msg=key)


def test_reference_is_the_books_procedure():
    """`numerical-reference` against `TwoLayerNet.numerical_gradient` (the book's loop over every entry):
    the same operations in the same order, so the real gap is zero."""
    rng = np.random.default_rng(0)
    net = TwoLayerNet(20, 5, 4, 0.5, seed=0)
    x, t = rng.random((6, 20)), rng.integers(0, 4, 6)
    ref = gradient(net.params, x, t, "numerical-reference")
    book = net.numerical_gradient(x, t)
    for key in ref:
        assert np.array_equal(ref[key], book[key]), key
