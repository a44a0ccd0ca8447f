"""Numerical differentiation and gradient descent (book sections 4.3 and 4.4)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: The book's step for central differences: small, but large enough to survive float64 rounding.
H = 1e-4


def numerical_diff(f: Callable[[float], float], x: float, h: float = H) -> float:
    """Central difference (f(x+h) - f(x-h)) / 2h."""
    return (f(x + h) - f(x - h)) / (2 * h)


def numerical_gradient(f: Callable[[NDArray[np.float64]], float], x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Gradient of f at x by central differences, one entry at a time, for x of any shape.

    x is perturbed in place (f usually closes over it, as the book's nets do) and every entry is restored
    to its exact original value. x must be a floating array: an integer array would truncate x + h.
    """
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        dtype = getattr(x, "dtype", type(x).__name__)
        raise TypeError(f"numerical_gradient needs a floating-point ndarray, got {dtype}; use x.astype(float)")
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        original = x[idx].copy()
        x[idx] = original + H
        fxh1 = f(x)
        x[idx] = original - H
        fxh2 = f(x)
        grad[idx] = (fxh1 - fxh2) / (2 * H)
        x[idx] = original
    return grad


def gradient_descent(
    f: Callable[[NDArray[np.float64]], float], init_x: ArrayLike, lr: float = 0.01, step_num: int = 100
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Plain gradient descent from init_x; returns (x, history) with history of shape (step_num, *x.shape)."""
    x = np.array(init_x, dtype=np.float64)
    history = np.empty((step_num, *x.shape))
    for i in range(step_num):
        history[i] = x
        x -= lr * numerical_gradient(f, x)
    return x, history
