"""The book's dataset/mnist.pkl: written here by the book's own procedure, loaded by `load_mnist` to the same
arrays as the IDX files; a pickle that would run code is refused before anything in it runs."""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.zdl.test_datasets import write_dataset
from zdl import datasets
from zdl.datasets import FILES, DatasetError, load_mnist

BOOK_KEY_FILE = {"train_img": FILES[0], "train_label": FILES[1], "test_img": FILES[2], "test_label": FILES[3]}


def book_convert_numpy(dataset_dir: Path) -> dict[str, np.ndarray]:
    """The book's dataset/mnist.py `_convert_numpy`, as it reads the four .gz files (offsets 16 and 8)."""
    dataset = {}
    for key, name in BOOK_KEY_FILE.items():
        with gzip.open(dataset_dir / name, "rb") as f:
            data = np.frombuffer(f.read(), np.uint8, offset=8 if key.endswith("label") else 16)
        dataset[key] = data if key.endswith("label") else data.reshape(-1, 784)
    return dataset


def book_init_mnist(dataset_dir: Path, out_dir: Path, protocol: int = -1) -> Path:
    """The book's `init_mnist` minus the download: `pickle.dump(dataset, f, -1)` into mnist.pkl."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "mnist.pkl", "wb") as f:
        pickle.dump(book_convert_numpy(dataset_dir), f, protocol)
    return out_dir / "mnist.pkl"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Never the real cache or the network, an empty memory cache."""
    monkeypatch.setenv("ZDL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ZDL_DATA_DIR", raising=False)
    monkeypatch.setenv("ZDL_MNIST_MIRRORS", "")
    datasets.clear_memory_cache()
    yield
    datasets.clear_memory_cache()


def assert_same_loads(pickle_dir: Path, idx_dir: Path) -> None:
    for normalize in (True, False):
        for flatten in (True, False):
            for one_hot in (True, False):
                from_pickle = load_mnist(normalize, flatten, one_hot, data_dir=pickle_dir)
                from_idx = load_mnist(normalize, flatten, one_hot, data_dir=idx_dir)
                for got, want in zip((*from_pickle[0], *from_pickle[1]), (*from_idx[0], *from_idx[1]), strict=True):
                    assert got.dtype == want.dtype and got.shape == want.shape
                    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("protocol", [2, 4, 5])  # -1 (the book's) is 5 on Python 3.8+, 4 on 3.4 to 3.7
def test_the_books_pickle_loads_to_the_idx_arrays(tmp_path: Path, protocol: int) -> None:
    write_dataset(tmp_path / "idx", n_train=12, n_test=5)
    book_init_mnist(tmp_path / "idx", tmp_path / "book", protocol)
    assert_same_loads(tmp_path / "book", tmp_path / "idx")


def test_found_through_zdl_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = write_dataset(tmp_path / "idx", n_train=9, n_test=4)
    book_init_mnist(tmp_path / "idx", tmp_path / "book")
    monkeypatch.setenv("ZDL_DATA_DIR", str(tmp_path / "book"))
    (x, t), (x_test, t_test) = load_mnist(normalize=False, flatten=False)
    np.testing.assert_array_equal(x[:, 0], arrays[FILES[0]])
    np.testing.assert_array_equal(t_test, arrays[FILES[3]])


def test_the_idx_files_win_in_the_same_directory(tmp_path: Path) -> None:
    write_dataset(tmp_path / "other", n_train=3)
    book_init_mnist(tmp_path / "other", tmp_path / "both")
    write_dataset(tmp_path / "both", n_train=7)
    assert len(load_mnist(data_dir=tmp_path / "both")[0][0]) == 7


def test_real_mnist_as_the_book_pickles_it(mnist_dir: Path, tmp_path: Path) -> None:
    """Whatever real MNIST the suite has, pickled by the book's procedure, loads to the IDX arrays."""
    book_init_mnist(mnist_dir, tmp_path / "book")
    from_pickle = load_mnist(one_hot_label=True, data_dir=tmp_path / "book")
    from_idx = load_mnist(one_hot_label=True, data_dir=mnist_dir)
    for got, want in zip((*from_pickle[0], *from_pickle[1]), (*from_idx[0], *from_idx[1]), strict=True):
        np.testing.assert_array_equal(got, want)


class Reduces:
    """Pickles as a call of `function(*args)`: what a malicious file does to run code while it is read."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args


def attacks(marker: Path) -> dict[str, tuple[Any, str]]:
    """Pickled payloads that create `marker` when run, and the name each refusal should give."""
    shell = f"touch {marker}"
    return {
        "os.system": (Reduces(os.system, shell), "system"),
        "subprocess": (Reduces(subprocess.call, ["touch", str(marker)]), "subprocess.call"),
        "eval": (Reduces(eval, f"open({str(marker)!r}, 'w').close()"), "builtins.eval"),
        "numpy.savetxt": (Reduces(np.savetxt, str(marker), np.zeros(1)), "numpy.savetxt"),
    }


@pytest.mark.parametrize("attack", ["os.system", "subprocess", "eval", "numpy.savetxt"])
@pytest.mark.parametrize("where", ["top", "inside the dict"])
def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path: Path, attack: str, where: str) -> None:
    marker = tmp_path / "pwned"
    payload, name = attacks(marker)[attack]
    write_dataset(tmp_path / "idx")
    book = book_convert_numpy(tmp_path / "idx")
    obj = payload if where == "top" else {**book, "train_label": payload}
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "mnist.pkl").write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(DatasetError) as info:
        load_mnist(data_dir=tmp_path / "book")
    message = str(info.value)
    assert "refused" in message and name in message and str(tmp_path / "book" / "mnist.pkl") in message
    assert not marker.exists()
    assert info.value.__cause__ is None


@pytest.mark.parametrize("content,expected", [
    ([np.zeros((1, 784), np.uint8)], "dict with keys"),
    ({"train_img": np.zeros((1, 784), np.uint8)}, "dict with keys"),
    ("float images", "should be a uint8 array"),
    ("wrong width", r"should be \(N, 784\)"),
    ("label 10", "out of range"),
    ("truncated", "not a readable pickle"),
])
def test_anything_but_the_books_arrays_names_the_problem(tmp_path: Path, content: Any, expected: str) -> None:
    write_dataset(tmp_path / "idx")
    book = book_convert_numpy(tmp_path / "idx")
    if content == "float images":
        content = {**book, "test_img": book["test_img"].astype(np.float32)}
    elif content == "wrong width":
        content = {**book, "train_img": book["train_img"].reshape(-1, 28 * 14)}
    elif content == "label 10":
        content = {**book, "test_label": np.full_like(book["test_label"], 10)}
    path = tmp_path / "book" / "mnist.pkl"
    path.parent.mkdir()
    data = pickle.dumps(book if content == "truncated" else content, protocol=5)
    path.write_bytes(data[: len(data) // 2] if content == "truncated" else data)
    with pytest.raises(DatasetError, match=expected) as info:
        load_mnist(data_dir=path.parent)
    assert str(path) in str(info.value)
