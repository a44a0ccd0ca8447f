"""zdl.datasets on synthetic IDX files written here, a local HTTP mirror, and the real data where present."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import itertools
import os
import socket
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from zdl import datasets
from zdl.datasets import (
    FILES,
    DatasetError,
    DatasetNotFoundError,
    dataset_shape,
    find_data_dir,
    load_mnist,
)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file body for uint8 images (N, 28, 28) or labels (N,), written independently of the parser."""
    magic = 2051 if array.ndim == 3 else 2049
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_gz(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(body, mtime=0))


def write_dataset(directory: Path, n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """The four standard files with random pixels and labels; returns the arrays written, by file name."""
    rng = np.random.default_rng(seed)
    arrays = {
        FILES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        FILES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        FILES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        FILES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_gz(directory / name, idx_bytes(array))
    return arrays


#: Digits 0-9 in MNIST's published test set (t10k-labels-idx1-ubyte).
MNIST_TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Never the real user cache, never the network unless a test names a mirror, an empty memory cache."""
    monkeypatch.setenv("ZDL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ZDL_DATA_DIR", raising=False)
    monkeypatch.setenv("ZDL_MNIST_MIRRORS", "")
    datasets.clear_memory_cache()
    yield tmp_path / "cache"
    datasets.clear_memory_cache()


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path / "data", write_dataset(tmp_path / "data")


class MirrorHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the mirror's root; under /truncate/ it promises the whole file, sends half and hangs up."""

    def do_GET(self) -> None:
        if self.path.startswith("/unannounced/"):  # the whole file, without a Content-Length
            body = (Path(self.directory) / "good" / self.path.rsplit("/", 1)[1]).read_bytes()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
            return None
        if not self.path.startswith("/truncate/"):
            return super().do_GET()
        body = (Path(self.directory) / "good" / self.path.rsplit("/", 1)[1]).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """A local mirror with the synthetic files under /good/ (nothing under /missing/), and their checksums
    standing in for the published ones."""
    root = tmp_path / "mirror"
    arrays = write_dataset(root / "good")
    monkeypatch.setitem(datasets.SHA256, "mnist", {name: (sha256(root / "good" / name),) for name in FILES})

    def handler(*args: object, **kwargs: object) -> MirrorHandler:
        return MirrorHandler(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", arrays
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- shapes, dtypes and values ------------------------------------------------------------------------

@pytest.mark.parametrize("normalize,flatten,one_hot", list(itertools.product([True, False], repeat=3)))
def test_shapes_and_dtypes(data, normalize: bool, flatten: bool, one_hot: bool) -> None:
    directory, _ = data
    (x, t), (x_test, t_test) = load_mnist(normalize, flatten, one_hot, data_dir=directory)
    for images, labels, n in ((x, t, 12), (x_test, t_test, 5)):
        assert images.shape == ((n, 784) if flatten else (n, 1, 28, 28))
        assert images.dtype == (np.float32 if normalize else np.uint8)
        assert labels.shape == ((n, 10) if one_hot else (n,))
        assert labels.dtype == np.uint8


def test_values_match_the_files(data) -> None:
    directory, arrays = data
    (x, t), (x_test, t_test) = load_mnist(normalize=False, flatten=False, data_dir=directory)
    np.testing.assert_array_equal(x[:, 0], arrays[FILES[0]])
    np.testing.assert_array_equal(t, arrays[FILES[1]])
    np.testing.assert_array_equal(x_test[:, 0], arrays[FILES[2]])
    np.testing.assert_array_equal(t_test, arrays[FILES[3]])


def test_normalize_divides_by_255(data) -> None:
    directory, arrays = data
    (x, _), _ = load_mnist(normalize=True, flatten=True, data_dir=directory)
    expected = arrays[FILES[0]].reshape(-1, 784).astype(np.float64) / 255.0
    np.testing.assert_allclose(x, expected, rtol=2**-24)  # float32: within half an ulp of the exact quotient
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_one_hot(data) -> None:
    directory, arrays = data
    (_, t), _ = load_mnist(one_hot_label=True, data_dir=directory)
    assert (t.sum(axis=1) == 1).all()
    np.testing.assert_array_equal(t.argmax(axis=1), arrays[FILES[1]])


def test_unknown_dataset_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="mnist, fashion-mnist"):
        load_mnist(dataset="cifar")
    with pytest.raises(ValueError, match="allowed"):
        find_data_dir("emnist")
    assert dataset_shape("mnist") == dataset_shape("fashion-mnist") == (784, 10)


@pytest.mark.parametrize("dataset", datasets.DATASETS)
def test_every_dataset_can_be_downloaded_and_checked(dataset: str) -> None:
    """Each known dataset has mirrors and a published SHA-256 for each of its four files."""
    mirrors = datasets.MIRRORS[dataset]
    assert mirrors and all(url.startswith(("https://", "http://")) and url.endswith("/") for url in mirrors)
    assert set(datasets.SHA256[dataset]) == set(FILES)
    assert all(len(digest) == 64 for digests in datasets.SHA256[dataset].values() for digest in digests)


# --- where the files are looked for --------------------------------------------------------------------

def test_search_order(tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_dataset(tmp_path / "arg", n_train=3)
    write_dataset(tmp_path / "env", n_train=4)
    write_dataset(isolated / "mnist", n_train=6)
    monkeypatch.setenv("ZDL_DATA_DIR", str(tmp_path / "env"))

    def n_train(**kwargs: object) -> int:
        return len(load_mnist(**kwargs)[0][0])  # type: ignore[arg-type]

    assert n_train(data_dir=tmp_path / "arg") == 3
    assert find_data_dir("mnist", tmp_path / "arg") == tmp_path / "arg"
    assert n_train() == 4
    assert n_train(data_dir=tmp_path / "nowhere") == 4  # an incomplete data_dir falls through
    monkeypatch.delenv("ZDL_DATA_DIR")
    assert n_train() == 6
    assert find_data_dir("mnist") == isolated / "mnist"


def test_data_dir_env_subdir_per_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bare files under $ZDL_DATA_DIR are MNIST; Fashion-MNIST must sit in its own subdirectory."""
    write_dataset(tmp_path / "env")
    monkeypatch.setenv("ZDL_DATA_DIR", str(tmp_path / "env"))
    assert find_data_dir("mnist") == tmp_path / "env"
    assert find_data_dir("fashion-mnist") != tmp_path / "env"
    write_dataset(tmp_path / "env" / "fashion-mnist", n_train=2)
    assert find_data_dir("fashion-mnist") == tmp_path / "env" / "fashion-mnist"
    assert len(load_mnist(dataset="fashion-mnist")[0][1]) == 2


def test_a_directory_needs_all_four_files(data) -> None:
    directory, _ = data
    (directory / FILES[3]).unlink()
    assert find_data_dir("mnist", directory) is None


# --- downloading -----------------------------------------------------------------------------------

def test_download_tries_the_next_mirror(mirror, isolated: Path) -> None:
    url, arrays = mirror
    (x, t), _ = load_mnist(normalize=False, mirrors=[f"{url}/missing/", f"{url}/good/"])
    np.testing.assert_array_equal(t, arrays[FILES[1]])
    assert sorted(p.name for p in (isolated / "mnist").iterdir()) == sorted(FILES)  # no .part left
    assert find_data_dir("mnist") == isolated / "mnist"


def test_download_shows_progress_and_where_the_files_went(mirror, isolated: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = mirror
    load_mnist(mirrors=[f"{url}/good/"])
    err = capsys.readouterr().err
    lines = err.replace("\r", "\n").splitlines()
    for name in FILES:  # each file's bar, run to its end
        assert any(line.startswith(name) and "100%" in line for line in lines), err
    assert f"downloaded to {isolated / 'mnist'}" in err


def test_mirrors_from_environment(mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    url, arrays = mirror
    monkeypatch.setenv("ZDL_MNIST_MIRRORS", f"{url}/missing, {url}/good")
    (x, _), _ = load_mnist(normalize=False, flatten=False)
    np.testing.assert_array_equal(x[:, 0], arrays[FILES[0]])


def test_without_mirrors_set_the_public_ones_are_tried_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ZDL_MNIST_MIRRORS unset, a missing file is asked of PyTorch's mirror, then Google's (this test
    answers for the network: every request fails, as offline, and is recorded)."""
    monkeypatch.delenv("ZDL_MNIST_MIRRORS")
    asked: list[str] = []

    def offline(url: str, timeout: float) -> None:
        asked.append(url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist()
    assert asked == ["https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
                     "https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz"]
    assert all(url in str(info.value) for url in asked)


def test_checksum_mismatch_leaves_nothing(mirror, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = mirror
    monkeypatch.setitem(datasets.SHA256["mnist"], FILES[0], ("0" * 64,))
    with pytest.raises(DatasetError, match=f"{FILES[0]}.*SHA-256"):
        load_mnist(mirrors=[f"{url}/good/"])
    assert FILES[0] not in os.listdir(isolated / "mnist")
    assert not [p for p in os.listdir(isolated / "mnist") if p.endswith(".part")]


def test_server_closing_mid_file_leaves_nothing(mirror, isolated: Path) -> None:
    url, _ = mirror
    with pytest.raises(DatasetNotFoundError, match="closed after"):
        load_mnist(mirrors=[f"{url}/truncate/"])
    assert os.listdir(isolated / "mnist") == []


def test_offline_error_says_what_to_put_where(tmp_path: Path, isolated: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(data_dir=tmp_path / "mine", mirrors=[f"http://127.0.0.1:{closed_port()}/"])
    message = str(info.value)
    for text in (*FILES, str(tmp_path / "mine"), str(isolated / "mnist"), "ZDL_DATA_DIR"):
        assert text in message
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert isinstance(info.value, FileNotFoundError)


def test_offline_without_mirrors() -> None:
    with pytest.raises(DatasetNotFoundError, match="no mirrors configured"):
        load_mnist()


# --- corrupt files ---------------------------------------------------------------------------------

def corrupt(directory: Path, how: str) -> Path:
    """Damage one file of a valid set in one of the ways a download or a disk can; return its path."""
    images = np.zeros((12, 28, 28), np.uint8)
    path = directory / (FILES[1] if how in ("count mismatch", "label out of range") else FILES[0])
    if how == "bad magic":
        write_gz(path, b"\x00\x00\x08\x04" + idx_bytes(images)[4:])
    elif how == "truncated body":
        write_gz(path, idx_bytes(images)[:-100])
    elif how == "truncated gzip":
        path.write_bytes(path.read_bytes()[:200])
    elif how == "not gzip":
        path.write_bytes(b"<html>404</html>")
    elif how == "wrong size images":
        write_gz(path, struct.pack(">IIII", 2051, 12, 20, 20) + bytes(12 * 400))
    elif how == "count mismatch":
        write_gz(path, idx_bytes(np.zeros(11, np.uint8)))
    elif how == "label out of range":
        write_gz(path, idx_bytes(np.full(12, 10, np.uint8)))
    return path


@pytest.mark.parametrize("how", ["bad magic", "truncated body", "truncated gzip", "not gzip",
                                 "wrong size images", "count mismatch", "label out of range"])
def test_corrupt_file_names_the_file(data, how: str) -> None:
    directory, _ = data
    path = corrupt(directory, how)
    with pytest.raises(DatasetError) as info:
        load_mnist(data_dir=directory)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is None


# --- caching ---------------------------------------------------------------------------------------

def test_reload_comes_from_memory_then_disk(data, monkeypatch: pytest.MonkeyPatch) -> None:
    directory, _ = data
    first = load_mnist(data_dir=directory)

    def no_parsing(path: Path) -> np.ndarray:
        raise AssertionError(f"{path} parsed again")

    monkeypatch.setattr(datasets, "_parse_idx", no_parsing)
    second = load_mnist(data_dir=directory)
    datasets.clear_memory_cache()
    third = load_mnist(data_dir=directory)  # as a new process would: from the .npy cache
    for a, b, c in zip(first, second, third, strict=True):
        for x, y, z in zip(a, b, c, strict=True):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)


def test_changed_file_is_parsed_again(data) -> None:
    directory, _ = data
    assert len(load_mnist(data_dir=directory)[0][0]) == 12
    write_dataset(directory, n_train=7, seed=1)
    assert len(load_mnist(data_dir=directory)[0][0]) == 7


def test_unreadable_disk_cache_is_ignored(data, isolated: Path) -> None:
    directory, arrays = data
    load_mnist(data_dir=directory)
    for npy in (isolated / "parsed").glob("*.npy"):
        npy.write_bytes(b"garbage")
    datasets.clear_memory_cache()
    (_, t), _ = load_mnist(data_dir=directory)
    np.testing.assert_array_equal(t, arrays[FILES[1]])


@pytest.mark.parametrize("normalize", [True, False])
def test_mutating_the_result_does_not_change_the_next_load(data, normalize: bool) -> None:
    directory, _ = data
    (x, t), (x_test, t_test) = load_mnist(normalize=normalize, data_dir=directory)
    expected = [a.copy() for a in (x, t, x_test, t_test)]
    for a in (x, t, x_test, t_test):
        a[...] = 7
    (x, t), (x_test, t_test) = load_mnist(normalize=normalize, data_dir=directory)
    for got, want in zip((x, t, x_test, t_test), expected, strict=True):
        np.testing.assert_array_equal(got, want)


# --- real data -----------------------------------------------------------------------------------------

def test_real_mnist(mnist_dir: Path, mnist_data) -> None:
    """Whatever real MNIST load_mnist found (mnist-small, or all of it): the published test set, 784-pixel
    digits of every class with MNIST's ~19% ink, and, if all 60,000 training digits, the published ones."""
    (x, t), (x_test, t_test) = mnist_data
    for name in (datasets.TEST_IMAGES, datasets.TEST_LABELS):
        assert sha256(mnist_dir / name) in datasets.SHA256["mnist"][name], f"{mnist_dir / name} is not MNIST's"
    assert x_test.shape == (10000, 784) and np.bincount(t_test).tolist() == MNIST_TEST_CLASS_COUNTS
    assert x.shape[1] == 784 and len(x) >= 1000 and set(np.unique(t)) == set(range(10))
    if len(x) == 60000:
        for name in (datasets.TRAIN_IMAGES, datasets.TRAIN_LABELS):
            assert sha256(mnist_dir / name) in datasets.SHA256["mnist"][name]
    assert 0.15 < (x > 0).mean() < 0.23 and 0.15 < (x_test > 0).mean() < 0.23  # 19.1% of MNIST pixels are ink


def test_fashion_mnist_from_debian() -> None:
    root = datasets.DEBIAN_DIRS["fashion-mnist"]
    if not all((root / name).exists() for name in FILES):
        pytest.skip(f"Fashion-MNIST: Debian's dataset-fashion-mnist package is not installed (no files in {root})")
    assert find_data_dir("fashion-mnist") == root
    (x, t), (x_test, t_test) = load_mnist(dataset="fashion-mnist", one_hot_label=True)
    assert x.shape == (60000, 784) and t.shape == (60000, 10) and x_test.shape == (10000, 784)
    assert (t.sum(axis=0) == 6000).all() and (t_test.sum(axis=0) == 1000).all()  # balanced classes
    for name in FILES:
        assert sha256(root / name) in datasets.SHA256["fashion-mnist"][name]


def test_a_download_larger_than_the_file_may_be_is_refused(mirror, isolated: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Announced too large: refused before reading; not announced: stopped at the cap. Nothing is kept."""
    url, _ = mirror
    monkeypatch.setitem(datasets.PUBLISHED_BYTES, "mnist", {name: 100 for name in FILES})
    for base in ("good", "unannounced"):
        with pytest.raises(DatasetNotFoundError) as info:
            load_mnist(mirrors=[f"{url}/{base}/"])
        assert "more than the 101 bytes this file may have" in str(info.value)
        assert not (isolated / "mnist").exists() or not os.listdir(isolated / "mnist")


def test_every_published_file_has_a_size() -> None:
    assert all(set(sizes) == set(FILES) for sizes in datasets.PUBLISHED_BYTES.values())
    assert set(datasets.PUBLISHED_BYTES) == set(datasets.DATASETS)
