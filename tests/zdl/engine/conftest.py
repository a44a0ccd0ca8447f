from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]


def _read_idx(path: Path, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.open(path).read(), np.uint8, offset=offset)


@pytest.fixture(scope="session")
def mnist_small():
    """Real MNIST digits from shared/data/mnist-small (skips where absent), normalized like load_mnist."""
    root = Path(os.environ.get("ZDL_SHARED_DATA", REPO.parent / "shared" / "data")) / "mnist-small"
    if not (root / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST subset not found at {root}")
    x = _read_idx(root / "train-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 255.0
    t = _read_idx(root / "train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    x_test = _read_idx(root / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 255.0
    t_test = _read_idx(root / "t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return (x, t), (x_test, t_test)
