"""Blocks cover every entry once, travel as JSON, and bad input is refused with a clear message."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zdl.engine import Block, assemble, block_gradient, gradient, partition
from zdl.engine.blocks import block_groups
from zdl.nets import TwoLayerNet

BOOK_SHAPES = {"W1": (784, 50), "b1": (50,), "W2": (50, 10), "b2": (10,)}


def coverage(shapes, blocks) -> dict[str, np.ndarray]:
    counts = {k: np.zeros(math.prod(s), dtype=int) for k, s in shapes.items()}
    for b in blocks:
        counts[b.param][b.start : b.stop] += 1
    return counts


shapes_strategy = st.tuples(st.integers(1, 50), st.integers(1, 20), st.integers(1, 12)).map(
    lambda s: {"W1": (s[0], s[1]), "b1": (s[1],), "W2": (s[1], s[2]), "b2": (s[2],)}
)


@given(shapes=shapes_strategy, n=st.integers(1, 100))
def test_n_blocks_cover_every_entry_exactly_once(shapes, n):
    blocks = partition(shapes, n_blocks=n)
    assert all(np.all(c == 1) for c in coverage(shapes, blocks).values())
    assert n <= len(blocks) <= n + 3 or len(blocks) == sum(math.prod(s) for s in shapes.values())


@given(shapes=shapes_strategy, k=st.integers(1, 500))
def test_max_size_blocks_cover_every_entry_and_respect_the_size(shapes, k):
    blocks = partition(shapes, max_size=k)
    assert all(np.all(c == 1) for c in coverage(shapes, blocks).values())
    assert max(b.size for b in blocks) <= k


@given(shapes=shapes_strategy, n=st.integers(1, 30))
def test_groups_cover_every_entry_once_with_balanced_work(shapes, n):
    groups = block_groups(shapes, n)
    assert len(groups) == n
    assert all(np.all(c == 1) for c in coverage(shapes, [b for g in groups for b in g]).values())
    if n > shapes["W1"][1]:
        return  # more groups than hidden units: plain partition() blocks, one per group
    w1_sizes = [sum(b.size for b in g if b.param == "W1") for g in groups]
    assert max(w1_sizes) - min(w1_sizes) <= max(shapes["W1"][0], 1)  # at most one hidden unit's column apart


def test_block_is_a_small_json_value():
    block = Block("W1", 0, 15680)
    assert Block.from_dict(json.loads(json.dumps(block.to_dict()))) == block
    assert str(block) == "W1[0:15680]"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Block("W3", 0, 1), "unknown parameter 'W3'"),
        (lambda: Block("W1", 5, 5), "start < stop"),
        (lambda: Block.from_dict({"param": "W1"}), "expected keys param, start, stop"),
        (lambda: partition(BOOK_SHAPES, n_blocks=0), "n_blocks must be a positive integer"),
        (lambda: partition(BOOK_SHAPES), "exactly one of"),
    ],
)
def test_bad_blocks_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def small_case():
    net = TwoLayerNet(6, 4, 3, seed=0)
    x = np.random.default_rng(0).random((5, 6))
    return net.params, x, np.array([0, 1, 2, 1, 0])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p, x, t: (Block("W1", 20, 25), p, x, t), r"out of range, W1 has 24 entries"),
        (lambda p, x, t: (Block("b2", 0, 1), p, x[:, :5], t), r"batch: expected shape \(N>=1, 6\), received \(5, 5\)"),
        (lambda p, x, t: (Block("b2", 0, 1), {**p, "b1": np.zeros(5)}, x, t), r"b1 has shape \(5,\), expected \(4,\)"),
        (lambda p, x, t: (Block("b2", 0, 1), {**p, "W2": p["W2"].astype(int)}, x, t), "W2 must be a floating-point"),
        (lambda p, x, t: (Block("b2", 0, 1), p, x, t + 1), r"expected values in \[0, 2\]"),
        (lambda p, x, t: (Block("b2", 0, 1), {k: v for k, v in p.items() if k != "W1"}, x, t), "missing"),
    ],
    ids=["out-of-range", "batch-width", "param-shape", "int-param", "labels", "missing-param"],
)
def test_bad_input_gets_a_clear_value_error(change, message):
    with pytest.raises(ValueError, match=message):
        block_gradient(*change(*small_case()))


def test_unknown_method_is_named():
    params, x, t = small_case()
    with pytest.raises(ValueError, match="gradient method must be one of"):
        gradient(params, x, t, "finite-difference")


def test_assemble_refuses_gaps_and_overlaps():
    shapes = {"W1": (2, 2), "b1": (2,), "W2": (2, 1), "b2": (1,)}
    pieces = [(b, np.zeros(b.size)) for b in partition(shapes, n_blocks=1)]
    with pytest.raises(ValueError, match="exactly once"):
        assemble(shapes, pieces[1:])
    with pytest.raises(ValueError, match="exactly once"):
        assemble(shapes, pieces + pieces[:1])
