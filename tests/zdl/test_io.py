"""zdl.io: weights round-trip bit for bit, and no write ever leaves a partial or temporary file behind."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from zdl import io as zdl_io
from zdl.io import atomic_write_bytes, load_weights, save_weights, weights_bytes
from zdl.nets import TwoLayerNet

KEYS = ("W1", "b1", "W2", "b2")


def trained_like_net() -> TwoLayerNet:
    net = TwoLayerNet(784, 50, 10, seed=3)
    net.params["b1"] = np.random.default_rng(1).normal(size=50)  # non-zero biases, so they are checked too
    net.params["b2"] = np.random.default_rng(2).normal(size=10)
    return net


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def corrupted(data: bytes, at: int) -> bytes:
    flipped = bytearray(data)
    flipped[at] ^= 0xFF
    return bytes(flipped)


# --- weights ---------------------------------------------------------------------------------------------

def test_weights_file_round_trip_is_bit_identical(tmp_path):
    net = trained_like_net()
    path = save_weights(net.params, tmp_path / "out" / "weights.npz")
    assert path == tmp_path / "out" / "weights.npz"
    with np.load(path) as archive:  # a plain .npz any NumPy user can open
        assert sorted(archive.files) == sorted(KEYS)
        assert all(np.array_equal(archive[k], net.params[k]) for k in KEYS)
    loaded = load_weights(path)
    assert loaded.sizes == (784, 50, 10)
    assert all(loaded.params[k].tobytes() == net.params[k].tobytes() for k in KEYS)
    assert os.listdir(path.parent) == ["weights.npz"]


def test_weights_bytes_round_trip():
    net = trained_like_net()
    loaded = load_weights(weights_bytes(net.params))
    assert all(np.array_equal(loaded.params[k], net.params[k]) for k in KEYS)
    x = np.random.default_rng(0).random((4, 784))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))


GOOD = weights_bytes(TwoLayerNet(3, 2, 2, seed=0).params)


NOT_NPZ = "is not a readable .npz"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param(b"garbage", NOT_NPZ, id="garbage"),
        pytest.param(b"", NOT_NPZ, id="empty"),
        pytest.param(GOOD[:100], NOT_NPZ, id="truncated"),
        pytest.param(corrupted(GOOD, 200), f"{NOT_NPZ}: Bad CRC-32", id="bad-crc"),
        pytest.param(npy_bytes(np.zeros(3)), "is a single array, not an .npz with W1 b1 W2 b2", id="npy-not-npz"),
        pytest.param(weights_bytes({"W1": np.zeros((3, 2)), "b1": np.zeros(2), "W2": np.zeros((2, 2)),
                                    "b2": np.zeros(3)}), r"b2 has shape \(3,\), expected \(2,\)", id="shapes-disagree"),
    ],
)
def test_load_weights_rejects_what_is_not_weights(tmp_path, data, problem):
    """A ValueError that names the problem (and the file, when it is one), never a traceback from NumPy."""
    with pytest.raises(ValueError, match=problem) as info:
        load_weights(data)
    path = tmp_path / "weights.npz"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=problem) as from_file:
        load_weights(path)
    if "shape" not in problem:  # a file that is not weights is named; bytes are "the data"
        assert str(path) in str(from_file.value) and "the data" in str(info.value)


def test_load_weights_names_missing_parameters():
    buffer = io.BytesIO()
    np.savez(buffer, W1=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"missing.*b1.*W2.*b2"):
        load_weights(buffer.getvalue())


# --- atomic writes ---------------------------------------------------------------------------------------

def test_atomic_write_creates_and_replaces_leaving_no_temp_file(tmp_path):
    target = tmp_path / "deep" / "dir" / "file.bin"
    assert atomic_write_bytes(target, b"first") == target
    assert target.read_bytes() == b"first"
    atomic_write_bytes(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["file.bin"]


def fail_with(exc: BaseException):
    def fail(*_args, **_kwargs):
        raise exc

    return fail


class Unwritable:
    """Not bytes: the write into the temporary file raises half way through `atomic_write_bytes`."""


@pytest.mark.parametrize("failure", ["write", "fsync", "replace", "interrupt"])
def test_failed_write_keeps_the_old_file_and_no_temp_file(tmp_path, monkeypatch, failure):
    target = tmp_path / "weights.npz"
    target.write_bytes(b"old contents")
    data: object = b"new contents"
    if failure == "write":
        data, expected = Unwritable(), TypeError
    else:
        expected = KeyboardInterrupt if failure == "interrupt" else OSError
        monkeypatch.setattr(zdl_io.os, "replace" if failure == "replace" else "fsync", fail_with(expected("simulated")))
    with pytest.raises(expected):
        atomic_write_bytes(target, data)  # type: ignore[arg-type]
    assert target.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["weights.npz"]


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(zdl_io.os, "replace", fail_with(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        save_weights(TwoLayerNet(3, 2, 2).params, tmp_path / "weights.npz")
    assert os.listdir(tmp_path) == []
