"""The book's `dataset/mnist.pkl`, read without running anything that is in the file.

The book's `dataset/mnist.py` downloads the four IDX files once and pickles them as a dict of four uint8
arrays: `train_img` and `test_img` (N, 784), `train_label` and `test_label` (N,). Readers of the book have
that file; `load_mnist` takes it as the same data (see zdl/datasets.py).

A pickle is a program: unpickling an arbitrary file can call any function it names (`os.system` ...).
So the file is read by an unpickler that resolves only the handful of NumPy names an array needs to
rebuild itself; any other name stops the reading before it is called. What comes out is then checked to
be exactly the book's four arrays.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from zdl.dataset_errors import DatasetError

#: The file name the book's `dataset/mnist.py` writes (`save_file = dataset_dir + "/mnist.pkl"`).
BOOK_PICKLE = "mnist.pkl"
#: Its keys, in the order of zdl.datasets.FILES: train images, train labels, test images, test labels.
BOOK_KEYS = ("train_img", "train_label", "test_img", "test_label")
PIXELS = 784
NUM_CLASSES = 10

#: (module, name) pairs a pickled ndarray refers to: NumPy 1 and 2 spell the module differently, protocol 5
#: rebuilds from a buffer (`_frombuffer`), older protocols through `_reconstruct`, protocol 2 pickles bytes
#: as `_codecs.encode(text, "latin1")`. None of them runs anything but building an array.
ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
})


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """An unpickler whose `find_class` (the only way a pickle reaches a callable) knows only ALLOWED_GLOBALS."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise DatasetError(f"{self.path}: refused: it asks for {module}.{name}, but the book's dataset/mnist.py "
                           "writes only NumPy arrays; nothing in the file was run")


def read_book_pickle(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The book's four arrays from `path`, as the IDX files hold them: images (N, 28, 28), labels (N,), uint8.

    Raises DatasetError naming the file for anything that is not the book's dict of four arrays.
    """
    try:
        with open(path, "rb") as f:
            loaded = _ArraysOnlyUnpickler(f, path).load()
    except DatasetError:
        raise
    except Exception as exc:  # a damaged pickle fails in many ways (UnpicklingError, EOFError, KeyError ...)
        raise DatasetError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    return _book_arrays(loaded, path)


def _book_arrays(loaded: object, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check the unpickled object is the book's dict (keys, dtypes, shapes, label range); reshape the images."""
    if not isinstance(loaded, dict) or set(loaded) != set(BOOK_KEYS):
        keys = sorted(map(str, loaded)) if isinstance(loaded, dict) else type(loaded).__name__
        raise DatasetError(f"{path}: expected the book's dict with keys {', '.join(BOOK_KEYS)}, found {keys}")
    for key in BOOK_KEYS:
        value = loaded[key]
        if not isinstance(value, np.ndarray) or value.dtype != np.uint8:
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise DatasetError(f"{path}: {key} should be a uint8 array, found {kind}")
    arrays = []
    for images_key, labels_key in ((BOOK_KEYS[0], BOOK_KEYS[1]), (BOOK_KEYS[2], BOOK_KEYS[3])):
        images, labels = loaded[images_key], loaded[labels_key]
        if images.ndim != 2 or images.shape[1] != PIXELS or labels.ndim != 1 or len(labels) != len(images):
            raise DatasetError(f"{path}: {images_key} {images.shape} and {labels_key} {labels.shape} should be "
                               f"(N, {PIXELS}) and (N,)")
        if len(labels) and labels.max() >= NUM_CLASSES:
            raise DatasetError(f"{path}: {labels_key} has label {labels.max()}, out of range 0..{NUM_CLASSES - 1}")
        arrays += [images.reshape(-1, 28, 28), labels]
    return arrays[0], arrays[1], arrays[2], arrays[3]
