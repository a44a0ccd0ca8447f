"""MNIST and Fashion-MNIST in the book's shapes, found locally or downloaded once, parsed once.

`load_mnist` is the book's `dataset/mnist.py` API. The four IDX files are looked for, in order, in:

1. the `data_dir` argument (used as is: the caller named the dataset with it);
2. `$ZDL_DATA_DIR/<dataset>/`, and for "mnist" also `$ZDL_DATA_DIR` itself (a directory of bare files
   is taken to be MNIST, never Fashion-MNIST, so the two can't be silently mixed up);
3. the cache dir `$ZDL_CACHE_DIR/<dataset>/` (default `platformdirs.user_cache_dir("zdl")/<dataset>/`);
4. for "fashion-mnist", Debian's `dataset-fashion-mnist` package: `/usr/share/datasets/fashion-mnist/`.

A directory counts if it holds all four files; for "mnist", one holding the book's own `mnist.pkl` (what
its `dataset/mnist.py` writes) counts too, the IDX files winning where a directory holds both. The pickle is
read by a restricted unpickler that runs nothing (zdl/mnist_pickle.py). Otherwise the missing files are downloaded into
the cache dir from the mirrors (the `mirrors` argument, else `$ZDL_MNIST_MIRRORS`, else the public
ones), SHA-256-checked, and written atomically. Local files are not checksummed: smaller valid sets
(such as shared/data/mnist-small) are welcome; the parser checks their structure instead.

Parsed arrays are cached in memory and as `.npy` files under `<cache root>/parsed/`, both keyed by
(resolved path, size, mtime), so a reload, also in a new process, skips gunzip and parsing.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import platformdirs

from zdl.dataset_errors import DatasetError, DatasetNotFoundError
from zdl.download import ChecksumError, DownloadError, atomic_write, download_file, say
from zdl.mnist_pickle import BOOK_PICKLE, read_book_pickle
from zdl.pixels import normalize_pixels

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist")

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES: tuple[str, ...] = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

# Accepted SHA-256 of downloads. Fashion-MNIST: the files as published (md5s match upstream's README),
# plus Debian's copies, which hold the same data re-gzipped without the file name in the header.
SHA256: dict[str, dict[str, tuple[str, ...]]] = {
    "mnist": {
        TRAIN_IMAGES: ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",),
        TRAIN_LABELS: ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",),
        TEST_IMAGES: ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",),
        TEST_LABELS: ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",),
    },
    "fashion-mnist": {
        TRAIN_IMAGES: ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                       "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
        TRAIN_LABELS: ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                       "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
        TEST_IMAGES: ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                      "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
        TEST_LABELS: ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                      "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
    },
}

# Sizes in bytes of the published files; a download may be at most 1% larger (another gzip of the same data)
# and is refused beyond that before its checksum is computed: a wrong or hostile mirror cannot fill the disk.
PUBLISHED_BYTES: dict[str, dict[str, int]] = {
    "mnist": {TRAIN_IMAGES: 9_912_422, TRAIN_LABELS: 28_881, TEST_IMAGES: 1_648_877, TEST_LABELS: 4_542},
    "fashion-mnist": {TRAIN_IMAGES: 26_421_880, TRAIN_LABELS: 29_515, TEST_IMAGES: 4_422_102, TEST_LABELS: 5_148},
}


def max_download_bytes(dataset: str, name: str) -> int:
    """The most bytes a download of `name` may have (its published size and 1%)."""
    return PUBLISHED_BYTES[dataset][name] * 101 // 100


DEBIAN_DIRS: dict[str, Path] = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # IDX: 0x08 (unsigned byte) and the number of dimensions
ROWS = COLS = 28
NUM_CLASSES = 10

#: (training, test) images of the published sets: the most one accuracy evaluation of a run goes through.
PUBLISHED_SIZES: dict[str, tuple[int, int]] = {"mnist": (60_000, 10_000), "fashion-mnist": (60_000, 10_000)}

_memory_cache: dict[tuple[str, int, int], np.ndarray] = {}


def dataset_shape(dataset: str) -> tuple[int, int]:
    """(input_size, output_size) of a network for `dataset`: 784 pixels in, 10 classes out."""
    _check_dataset(dataset)
    return ROWS * COLS, NUM_CLASSES


def cache_dir(dataset: str) -> Path:
    """Where downloads of `dataset` go: `$ZDL_CACHE_DIR/<dataset>`, else the user cache dir."""
    return _cache_root() / _check_dataset(dataset)


def search_dirs(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The directories looked in, in order (see the module docstring for why each is there)."""
    _check_dataset(dataset)
    dirs = [Path(data_dir).expanduser()] if data_dir is not None else []
    if env := os.environ.get("ZDL_DATA_DIR"):
        dirs.append(Path(env).expanduser() / dataset)
        if dataset == "mnist":
            dirs.append(Path(env).expanduser())
    dirs.append(cache_dir(dataset))
    if dataset in DEBIAN_DIRS:
        dirs.append(DEBIAN_DIRS[dataset])
    return dirs


def find_data_dir(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first searched directory holding all four files, or None; never downloads."""
    for directory in search_dirs(dataset, data_dir):
        if all((directory / name).is_file() for name in FILES):
            return directory
    return None


def load_mnist(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    dataset: str = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load MNIST or Fashion-MNIST as the book does: `(x_train, t_train), (x_test, t_test)`.

    Parameters
    ----------
    normalize : float32 pixels in [0, 1] (pixel / 255) if True, else the raw uint8 pixels.
    flatten : images as (N, 784) if True, else (N, 1, 28, 28).
    one_hot_label : labels as (N, 10) uint8 one-hot rows if True, else (N,) uint8 class indices.
    dataset : "mnist" or "fashion-mnist" (see DATASETS).
    data_dir : a directory holding the four files (or, for MNIST, the book's mnist.pkl), looked in first.
    mirrors : URL prefixes to download missing files from, in order; default `$ZDL_MNIST_MIRRORS`
        (comma/space separated; set but empty means never download), else MIRRORS[dataset].

    Returned arrays are fresh copies: changing them does not change the next load.
    Raises DatasetNotFoundError (a FileNotFoundError) if the files are neither found nor downloadable,
    DatasetError (a ValueError) if a file is corrupt, a download fails its checksum, or an mnist.pkl holds
    anything but the book's arrays (refused without running it).
    """
    source = find_source(dataset, data_dir)
    given = Path(data_dir).expanduser() if data_dir is not None else None
    if given is not None and source not in (given, given / BOOK_PICKLE):
        log.warning("data_dir %s lacks some of %s; looking elsewhere", data_dir, ", ".join(FILES))
    if source is None:
        source = download(dataset, mirrors=mirrors, data_dir=data_dir)
    is_pickle = source.name == BOOK_PICKLE
    arrays = read_book_pickle_cached(source) if is_pickle else [read_idx(source / name) for name in FILES]
    paths = [source] * len(FILES) if is_pickle else [source / name for name in FILES]
    parts = []
    for i in (0, 2):  # (images, labels) of the training set, then of the test set
        images, labels = arrays[i], arrays[i + 1]
        if len(images) != len(labels):
            raise DatasetError(f"{paths[i]} has {len(images)} images but {paths[i + 1]} has {len(labels)} labels")
        parts.append((_to_book_images(images, normalize, flatten), _to_book_labels(labels, one_hot_label)))
    return parts[0], parts[1]


def find_source(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first searched directory holding the four IDX files, or the book's mnist.pkl (MNIST only) if it
    comes first; None if there is neither. Never downloads."""
    for directory in search_dirs(dataset, data_dir):
        if all((directory / name).is_file() for name in FILES):
            return directory
        if dataset == "mnist" and (directory / BOOK_PICKLE).is_file():
            return directory / BOOK_PICKLE
    return None


def read_book_pickle_cached(path: Path) -> list[np.ndarray]:
    """The book's mnist.pkl as the four IDX arrays (read-only), kept in memory keyed like `read_idx`."""
    stat = path.stat()
    keys = [(f"{path.resolve()}#{name}", stat.st_size, stat.st_mtime_ns) for name in FILES]
    if not all(key in _memory_cache for key in keys):
        for key, array in zip(keys, read_book_pickle(path), strict=True):
            array.flags.writeable = False
            _memory_cache[key] = array
    return [_memory_cache[key] for key in keys]


def _to_book_images(images: np.ndarray, normalize: bool, flatten: bool) -> np.ndarray:
    shape = (len(images), ROWS * COLS) if flatten else (len(images), 1, ROWS, COLS)
    if not normalize:
        return images.reshape(shape).copy()
    return normalize_pixels(images.reshape(shape), np.float32)


def _to_book_labels(labels: np.ndarray, one_hot_label: bool) -> np.ndarray:
    if one_hot_label:
        return np.eye(NUM_CLASSES, dtype=np.uint8)[labels]
    return labels.copy()


def download(
    dataset: str,
    mirrors: Sequence[str] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Download the files missing from the cache dir, checksum-verified, with a progress bar each; return the
    cache dir. `data_dir` only makes the not-found message list the directories that were searched.
    """
    dest = cache_dir(dataset)
    urls = _mirrors(dataset, mirrors)
    failures: list[str] = []
    bad_checksum = False
    missing = [name for name in FILES if not (dest / name).is_file()]
    for name in missing:
        for base in urls:
            url = base.rstrip("/") + "/" + name
            try:
                download_file(url, dest / name, SHA256[dataset][name], max_download_bytes(dataset, name))
                break
            except (OSError, http.client.HTTPException, DownloadError) as exc:  # URLError is an OSError
                say(f"download of {url} failed: {exc}")
                failures.append(f"{url}: {exc}")
                bad_checksum |= isinstance(exc, ChecksumError)
        else:
            if bad_checksum:
                raise DatasetError(f"could not download {name}; " + "; ".join(failures))
            raise DatasetNotFoundError(_not_found_message(dataset, data_dir, failures))
    if missing:
        say(f"{dataset}: {len(missing)} file(s) downloaded to {dest} (found there from now on)")
    return dest


def _mirrors(dataset: str, mirrors: Sequence[str] | None) -> Sequence[str]:
    if mirrors is not None:
        return mirrors
    env = os.environ.get("ZDL_MNIST_MIRRORS")
    if env is not None:
        return [url for url in re.split(r"[,\s]+", env) if url]
    return MIRRORS[dataset]


def _not_found_message(dataset: str, data_dir: str | os.PathLike[str] | None, failures: list[str]) -> str:
    dirs = "\n".join(f"  {d}" for d in search_dirs(dataset, data_dir))
    env = "ZDL_DATA_DIR is not set" if "ZDL_DATA_DIR" not in os.environ else "ZDL_DATA_DIR is set"
    tried = "\n".join(f"  {f}" for f in failures) or "  (no mirrors configured)"
    return (f"{dataset} data not found and could not be downloaded.\n"
            f"Put the four files {', '.join(FILES)} into one of these directories (searched in order):\n"
            f"{dirs}\nor point ZDL_DATA_DIR at a directory holding them ({env}).\nDownload attempts:\n{tried}")


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array in a gzipped IDX file: images (N, 28, 28) or labels (N,); read-only, cached."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _memory_cache:
        return _memory_cache[key]
    npy = _cache_root() / "parsed" / (path.name.split(".")[0] + "-" +
                                      hashlib.sha256(repr(key).encode()).hexdigest()[:20] + ".npy")
    array = _load_npy(npy)
    if array is None:
        array = _parse_idx(path)
        _save_npy(npy, array)
    array.flags.writeable = False
    _memory_cache[key] = array
    return array


def clear_memory_cache() -> None:
    """Forget parsed arrays held in this process (the on-disk cache stays)."""
    _memory_cache.clear()


def _parse_idx(path: Path) -> np.ndarray:
    """Parse and validate one file, turning every kind of corruption into a DatasetError naming it."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: not a valid gzip file ({exc})") from None
    if len(data) < 8:
        raise DatasetError(f"{path}: {len(data)} bytes is too short for an IDX header")
    magic, count = struct.unpack(">II", data[:8])
    shape: tuple[int, ...]
    if magic == LABEL_MAGIC:
        header, shape = 8, (count,)
    elif magic == IMAGE_MAGIC and len(data) >= 16:
        rows, cols = struct.unpack(">II", data[8:16])
        if (rows, cols) != (ROWS, COLS):
            raise DatasetError(f"{path}: images are {rows}x{cols}, expected {ROWS}x{COLS}")
        header, shape = 16, (count, rows, cols)
    else:
        raise DatasetError(f"{path}: bad magic number {magic:#010x}, expected {IMAGE_MAGIC:#010x} (images) "
                           f"or {LABEL_MAGIC:#010x} (labels)")
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DatasetError(f"{path}: {len(data)} bytes after gunzip, but its header ({shape}) says {expected}")
    array = np.frombuffer(data, np.uint8, offset=header).reshape(shape)
    if magic == LABEL_MAGIC and count and array.max() >= NUM_CLASSES:
        raise DatasetError(f"{path}: label {array.max()} is out of range 0..{NUM_CLASSES - 1}")
    return array


def _load_npy(path: Path) -> np.ndarray | None:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as exc:
        log.warning("ignoring unreadable parsed cache %s: %s", path, exc)
        return None


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Best effort: a read-only cache dir costs speed in the next process, not correctness."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda out: np.save(out, array, allow_pickle=False))
    except OSError as exc:
        log.warning("could not write parsed cache %s: %s", path, exc)


def _cache_root() -> Path:
    env = os.environ.get("ZDL_CACHE_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("zdl"))


def _check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    return dataset
