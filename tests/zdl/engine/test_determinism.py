"""The gradient is the same bits however it is split into blocks, chunks, threads and processes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zdl.engine import (
    Block,
    BlockGroup,
    assemble,
    block_gradient,
    block_groups,
    blocks_gradient,
    gradient,
    partition,
)
from zdl.engine.kernel import IMPLEMENTATIONS
from zdl.engine.parallel import ProcessPoolGradient
from zdl.nets import TwoLayerNet
from zdl.train import TrainConfig, Trainer


def mnist_batch(mnist_small, size=100, seed=0):
    (x_train, t_train), _ = mnist_small
    mask = np.random.default_rng(seed).choice(len(x_train), size)
    return x_train[mask], t_train[mask]


def assert_same_bits(a: dict, b: dict) -> None:
    for key in a:
        assert np.array_equal(a[key], b[key]), f"{key} differs: max |diff| {np.abs(a[key] - b[key]).max()}"
        assert np.count_nonzero(a[key]) > a[key].size // 10, f"{key}: mostly zeros, a weak comparison"


@pytest.mark.parametrize("n_blocks", [2, 7, 64])
def test_any_number_of_blocks_gives_identical_bits(mnist_small, kernel, n_blocks):
    x, t = mnist_batch(mnist_small)
    params = TwoLayerNet(784, 50, 10, seed=0).params
    assert_same_bits(gradient(params, x, t, n_blocks=1, kernel=kernel),
                     gradient(params, x, t, n_blocks=n_blocks, kernel=kernel))


@settings(max_examples=10, deadline=None)
@given(max_size=st.integers(1, 2000), seed=st.integers(0, 1000))
def test_blocks_of_any_size_computed_alone_give_identical_bits(mnist_small, max_size, seed):
    """Each block computed by itself (its own forward pass, as a remote worker would) matches the whole."""
    x, t = mnist_batch(mnist_small, size=20, seed=seed)
    params = TwoLayerNet(784, 12, 10, seed=seed).params
    shapes = {k: v.shape for k, v in params.items()}
    for kernel in IMPLEMENTATIONS:
        pieces = [(b, block_gradient(b, params, x, t, kernel=kernel)) for b in partition(shapes, max_size=max_size)]
        assert_same_bits(gradient(params, x, t, kernel=kernel), assemble(shapes, pieces))


@pytest.mark.parametrize("n_groups", [1, 2, 3, 7, 50])
def test_block_groups_computed_together_give_identical_bits(mnist_small, kernel, n_groups):
    """A worker computes its group in one call (shared pairs, column ranges); the bits do not change."""
    x, t = mnist_batch(mnist_small, size=40, seed=n_groups)
    params = TwoLayerNet(784, 50, 10, seed=n_groups).params
    shapes = {k: v.shape for k, v in params.items()}
    pieces = [piece for group in block_groups(shapes, n_groups)
              for piece in zip(group, blocks_gradient(group, params, x, t, kernel=kernel), strict=True)]
    assert_same_bits(gradient(params, x, t, kernel=kernel), assemble(shapes, pieces))


@pytest.mark.parametrize("method", ["numerical", "numerical-reference", "backprop"])
def test_a_prepared_group_gives_its_blocks_values_end_to_end_step_after_step(mnist_small, kernel, method):
    """What a worker keeps between steps (BlockGroup): the same bits as the whole gradient's entries, laid
    end to end in the group's block order, at every step (new weights and batch) and for every group."""
    hidden = 50 if method != "numerical-reference" else 3
    shapes = {k: v.shape for k, v in TwoLayerNet(784, hidden, 10, seed=0).params.items()}
    groups = [BlockGroup(group, shapes) for group in block_groups(shapes, 3)]
    for step in range(2):
        x, t = mnist_batch(mnist_small, size=30, seed=step)
        params = TwoLayerNet(784, hidden, 10, weight_init_std=0.5, seed=step).params
        whole = gradient(params, x, t, method, kernel=kernel)
        got = np.concatenate([group.gradient(params, x, t, method, kernel=kernel) for group in groups])
        expected = np.concatenate([whole[b.param].reshape(-1)[b.start : b.stop] for g in groups for b in g.blocks])
        assert sum(g.size for g in groups) == got.size == sum(v.size for v in whole.values())
        assert np.array_equal(got, expected), f"step {step}: max |diff| {np.abs(got - expected).max()}"
        assert np.count_nonzero(got) > got.size // 2


def test_a_prepared_group_refuses_parameters_of_other_shapes(mnist_small):
    x, t = mnist_batch(mnist_small, size=5)
    shapes = {k: v.shape for k, v in TwoLayerNet(784, 50, 10, seed=0).params.items()}
    group = BlockGroup(block_groups(shapes, 2)[0], shapes)
    with pytest.raises(ValueError, match=r"planned for parameter shapes .*\(784, 50\).*got .*\(784, 20\)"):
        group.gradient(TwoLayerNet(784, 20, 10, seed=0).params, x, t)
    with pytest.raises(ValueError, match=r"W1\[0:99999\]: out of range"):
        BlockGroup([Block("W1", 0, 99999)], shapes)


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_any_number_of_threads_gives_identical_bits(fashion, kernel, threads):
    """Threads split the hidden units (and samples of the forward pass); each entry has one owner."""
    (x_train, t_train), _ = fashion
    x, t = x_train[:60], t_train[:60]
    params = TwoLayerNet(784, 37, 10, seed=threads).params
    shapes = {k: v.shape for k, v in params.items()}
    group = block_groups(shapes, 2)[1]
    alone = blocks_gradient(group, params, x, t, kernel=kernel)
    threaded = blocks_gradient(group, params, x, t, kernel=kernel, threads=threads)
    for block, a, b in zip(group, alone, threaded, strict=True):
        assert np.array_equal(a, b), str(block)
    assert_same_bits(gradient(params, x, t, kernel=kernel), gradient(params, x, t, kernel=kernel, threads=threads))


def test_chunking_gives_identical_bits(mnist_small, fashion, kernel, tiny_chunks):
    """Chunks of one or a few samples (as at batch 10,000) add up in the same order as one chunk."""
    for data, hidden in ((mnist_small, 30), (fashion, 9)):
        (x_train, t_train), _ = data
        x, t = x_train[:25], t_train[:25]
        params = TwoLayerNet(784, hidden, 10, seed=hidden).params
        whole = gradient(params, x, t, kernel=kernel)
        with tiny_chunks():
            chunked = gradient(params, x, t, kernel=kernel, threads=2)
        assert_same_bits(whole, chunked)


@pytest.mark.parametrize("method", ["numerical", "numerical-reference"])
def test_process_pool_matches_in_process(mnist_small, method):
    x, t = mnist_batch(mnist_small, size=30)
    hidden = 50 if method == "numerical" else 3
    params = TwoLayerNet(784, hidden, 10, seed=2).params
    with ProcessPoolGradient((784, hidden, 10), workers=2, method=method, max_batch=30) as pool:
        assert_same_bits(gradient(params, x, t, method), pool(params, x, t))


def test_training_with_two_workers_gives_bit_identical_weights(mnist_small):
    config = TrainConfig(hidden_size=20, iters=15, batch_size=50, seed=5)
    alone = Trainer(mnist_small, config)
    alone.run()
    with ProcessPoolGradient((784, 20, 10), workers=2, max_batch=50) as pool:
        pooled = Trainer(mnist_small, config, pool)
        pooled.run()
    assert_same_bits(alone.net.params, pooled.net.params)
    assert alone.history.loss == pooled.history.loss
