"""One call's memory stays under the budget at the largest admitted shapes, and `check` can stop it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from zdl.engine import block_groups, blocks_gradient
from zdl.engine.budget import MEMORY_BUDGET

#: The largest shapes the service admits: input 784, hidden 1024, output 10, batch 10,000.
LARGEST = {"W1": (784, 1024), "b1": (1024,), "W2": (1024, 10), "b2": (10,)}
BATCH = 10_000

MEASURE = textwrap.dedent("""
    import ctypes, json, sys
    import numpy as np
    from zdl.engine import Block, blocks_gradient, block_groups, warm_up

    def peak_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    method, kernel, n_groups = sys.argv[1], sys.argv[2], int(sys.argv[3])
    warm_up(kernel)
    rng = np.random.default_rng(0)
    # Fashion-MNIST-like: about half the pixels non-zero, values k / 255, made in float64 in place
    x = rng.integers(0, 256, (10_000, 784)).astype(np.float64)
    x[rng.random((10_000, 784)) < 0.5] = 0.0
    x /= 255.0
    t = rng.integers(0, 10, 10_000)
    params = {"W1": 0.01 * rng.standard_normal((784, 1024)), "b1": np.zeros(1024),
              "W2": 0.01 * rng.standard_normal((1024, 10)), "b2": np.zeros(10)}
    shapes = {k: v.shape for k, v in params.items()}
    group = block_groups(shapes, n_groups)[-1] if method != "numerical-reference" else [Block("b2", 0, 1)]
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # memory freed while making the inputs goes back to the system
    with open("/proc/self/clear_refs", "w") as f:  # peak RSS := current RSS
        f.write("5")
    before = peak_kib()
    values = blocks_gradient(group, params, x, t, method, kernel=kernel)
    assert all(np.isfinite(v).all() for v in values)
    print(json.dumps({"growth_bytes": (peak_kib() - before) * 1024}))
""")


def peak_growth(method: str, kernel: str, n_groups: int) -> int:
    """Peak RSS growth of one blocks_gradient call at the largest shapes, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", MEASURE, method, kernel, str(n_groups)],
                          capture_output=True, text=True, timeout=600)
    if "clear_refs" in done.stderr and done.returncode != 0:
        pytest.skip(f"cannot reset the peak RSS here (/proc/self/clear_refs): {done.stderr.splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout.splitlines()[-1])["growth_bytes"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, kernel, n_groups",
    [
        ("numerical", "closed-form", 1),  # the whole gradient as one group
        ("numerical", "numba", 1),  # the whole gradient as one group (measured 104 MiB, about 4 s)
        ("numerical", "numpy", 64),  # 16 hidden units of every row, b1, W2, b2: the same chunking (96 MiB)
        ("backprop", "auto", 1),  # 21 MiB
        ("numerical-reference", "auto", 1),  # one entry: two full forward passes at batch 10,000 (25 MiB)
    ],
)
def test_one_call_at_the_largest_shapes_stays_under_the_memory_budget(method, kernel, n_groups):
    growth = peak_growth(method, kernel, n_groups)
    assert growth < MEMORY_BUDGET, f"{method} ({kernel}) grew by {growth / 2**20:.0f} MiB"


class Stop(Exception):
    pass


def stopping_after(calls: int):
    count = [0]

    def check() -> None:
        count[0] += 1
        if count[0] >= calls:
            raise Stop

    return check, count


@pytest.fixture(scope="module")
def large_inputs():
    rng = np.random.default_rng(1)
    x = np.where(rng.random((BATCH, 784)) < 0.5, rng.integers(1, 256, (BATCH, 784)) / 255.0, 0.0)
    params = {"W1": 0.01 * rng.standard_normal(LARGEST["W1"]), "b1": np.zeros(1024),
              "W2": 0.01 * rng.standard_normal(LARGEST["W2"]), "b2": np.zeros(10)}
    return params, x, rng.integers(0, 10, BATCH)


@pytest.mark.parametrize("method, kernel", [("numerical", "closed-form"), ("numerical", "numba"),
                                            ("numerical", "numpy"), ("numerical-reference", "auto"),
                                            ("backprop", "auto")])
def test_an_exception_in_check_aborts_the_call_at_once(large_inputs, method, kernel):
    """`check` is called between chunks; what it raises comes out, and no further chunk runs."""
    params, x, t = large_inputs
    group = block_groups(LARGEST, 8)[0]
    check, count = stopping_after(2)
    with pytest.raises(Stop):
        blocks_gradient(group, params, x, t, method, kernel=kernel, check=check)
    assert count[0] == 2


def test_check_is_called_between_chunks(mnist_small, kernel):
    """A small call checks at least once per kind of work (forward, W1/b1, W2, b2)."""
    (x_train, t_train), _ = mnist_small
    params = {"W1": np.zeros((784, 20)), "b1": np.zeros(20), "W2": np.zeros((20, 10)), "b2": np.zeros(10)}
    group = block_groups({k: v.shape for k, v in params.items()}, 1)[0]
    check, count = stopping_after(10**9)
    blocks_gradient(group, params, x_train[:100], t_train[:100], kernel=kernel, check=check)
    assert count[0] >= 4
