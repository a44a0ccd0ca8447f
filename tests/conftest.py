"""Shared fixtures: a small learnable MNIST-like data set made here, and the real `mnist-small` where present.

The real data lives outside the repository in `<repo>/../shared/data/mnist-small` (override the `data`
directory with `$ZDL_SHARED_DATA`); tests that need it skip where it is absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

Dataset = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def make_dataset(
    n_train: int = 600, n_test: int = 200, *, side: int = 8, n_classes: int = 10, seed: int = 0
) -> Dataset:
    """MNIST-like data in `load_mnist`'s layout: float32 pixels (N, side*side) in [0, 1], uint8 labels (N,).

    Each class has a prototype of ~20% "ink" pixels; a sample keeps ~85% of its prototype's ink and gets a
    little noise, so about 19% of pixels are non-zero (as in MNIST) and the classes are learnable.
    """
    rng = np.random.default_rng(seed)
    pixels = side * side
    prototypes = np.zeros((n_classes, pixels), dtype=bool)
    for c in range(n_classes):
        prototypes[c, rng.choice(pixels, max(1, round(0.2 * pixels)), replace=False)] = True

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        t = rng.integers(0, n_classes, n)
        ink = (prototypes[t] & (rng.random((n, pixels)) < 0.85)) | (rng.random((n, pixels)) < 0.03)
        x = np.where(ink, rng.uniform(0.3, 1.0, (n, pixels)), 0.0).astype(np.float32)
        return x, t.astype(np.uint8)

    return sample(n_train), sample(n_test)


@pytest.fixture(scope="session")
def dataset_factory() -> Callable[..., Dataset]:
    """`make_dataset` itself, for tests that need other sizes (e.g. `side=28` for 784-pixel images)."""
    return make_dataset


@pytest.fixture(scope="session")
def synthetic_data() -> Dataset:
    """600 training and 200 test 8x8 images (64 pixels), 10 classes."""
    return make_dataset()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared data directory (`$ZDL_SHARED_DATA`, else `<repo>/../shared/data`); may not exist."""
    return Path(os.environ.get("ZDL_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def mnist_small_dir(shared_data_dir: Path) -> Path:
    """The real `mnist-small` directory; skips the test where its four files are absent."""
    root = shared_data_dir / "mnist-small"
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")
    missing = [name for name in names if not (root / name).is_file()]
    if missing:
        pytest.skip(f"real MNIST subset not found: {root} lacks {missing}")
    return root


@pytest.fixture(scope="session")
def mnist_small_data(mnist_small_dir: Path) -> Dataset:
    """The real `mnist-small` set through `zdl.datasets.load_mnist` (5,000 train, 10,000 test, flattened)."""
    from zdl.datasets import load_mnist

    return load_mnist(data_dir=mnist_small_dir)
