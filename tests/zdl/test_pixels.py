"""Pixel codes: a normalized batch packs to uint8 and comes back with the same bits, or does not pack at all."""

from __future__ import annotations

import numpy as np
import pytest

from zdl.pixels import normalize_pixels, pack_pixels


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_every_code_round_trips_in_float32_and_float64() -> None:
    codes = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for dtype in (np.float32, np.float64):
        x = normalize_pixels(codes, dtype)
        packed = pack_pixels(x)
        assert packed is not None and packed.dtype == np.uint8
        assert np.array_equal(packed, codes)
        assert same_bits(normalize_pixels(packed, dtype), x)


def test_the_loaders_batches_round_trip(mnist_data) -> None:
    (x_train, _), _ = mnist_data
    batch = x_train[np.random.default_rng(0).choice(len(x_train), 100)]
    packed = pack_pixels(batch)
    assert packed is not None
    assert same_bits(normalize_pixels(packed, batch.dtype), batch)


def test_an_independent_normalization_agrees() -> None:
    """The book's own expression, written out here: x = codes.astype(float32); x /= 255.0."""
    codes = np.random.default_rng(1).integers(0, 256, size=(50, 784), dtype=np.uint8)
    x = codes.astype(np.float32)
    x /= 255.0
    assert same_bits(normalize_pixels(codes), x)
    assert np.array_equal(pack_pixels(x), codes)


@pytest.mark.parametrize("x", [
    np.random.default_rng(2).random((4, 5)),                     # arbitrary floats
    np.array([0.0, -0.0, 1.0], dtype=np.float32),                # -0.0 would come back as +0.0
    np.array([0.5, np.nan], dtype=np.float32),
    np.array([0.0, 2.0], dtype=np.float32),                      # beyond code 255
    np.array([-1 / 255], dtype=np.float32),
    np.array([1 / 255 + 1e-7], dtype=np.float32),                # close to a code, not on it
    np.arange(6, dtype=np.int64),                                # not floats
], ids=["random", "negative-zero", "nan", "above", "negative", "near", "integers"])
def test_what_does_not_round_trip_is_not_packed(x: np.ndarray) -> None:
    assert pack_pixels(x) is None


def test_empty_and_non_contiguous() -> None:
    assert np.array_equal(pack_pixels(np.zeros((0, 784), np.float32)), np.zeros((0, 784), np.uint8))
    x = normalize_pixels(np.arange(256, dtype=np.uint8).reshape(16, 16))[:, ::2]
    assert np.array_equal(pack_pixels(x), np.arange(256, dtype=np.uint8).reshape(16, 16)[:, ::2])
