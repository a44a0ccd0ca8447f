"""Compile (or load from Numba's cache) the engine's kernels before any timed work: `zdl train`, the speed
probe and every service worker call `warm_up()` first, so no step ever waits for a compiler."""

from __future__ import annotations

import time

import numpy as np

from zdl.engine.blocks import block_groups
from zdl.engine.compute import blocks_gradient
from zdl.engine.kernel import COMPILED, resolve_kernel


def warm_up(kernel: str | None = None) -> float:
    """Compile (or load from the cache) every compiled kernel with tiny inputs; returns the seconds taken.

    A no-op for the NumPy kernel; the closed form warms the evaluated kernel too (its fallback). A service
    worker calls this when it starts.
    """
    began = time.perf_counter()
    chosen = resolve_kernel(kernel)
    if chosen in COMPILED:
        rng = np.random.default_rng(0)
        params = {"W1": rng.normal(size=(3, 2)), "b1": np.zeros(2), "W2": rng.normal(size=(2, 2)), "b2": np.zeros(2)}
        x = np.array([[0.0, 0.5, 1.0], [0.25, 0.0, 0.0]])
        shapes = {name: value.shape for name, value in params.items()}
        blocks = [b for group in block_groups(shapes, 1) for b in group]
        for compiled in ("numba", "closed-form") if chosen == "closed-form" else ("numba",):
            blocks_gradient(blocks, params, x, np.array([0, 1]), "numerical", kernel=compiled)
            blocks_gradient(blocks, params, 300 * x, np.array([0, 1]), "numerical", kernel=compiled)  # fallbacks
    return time.perf_counter() - began
