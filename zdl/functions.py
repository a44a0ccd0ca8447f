"""The chapter's activation and loss functions, with the book's definitions and stability tricks."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Added inside the log of the cross-entropy so that log(0) never happens (the book's constant).
DELTA = 1e-7


def sigmoid(x: ArrayLike) -> NDArray[np.float64]:
    """Logistic function 1 / (1 + exp(-x)), elementwise."""
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


def sigmoid_grad(x: ArrayLike) -> NDArray[np.float64]:
    """Derivative of `sigmoid` at x: (1 - s) * s (used by backprop)."""
    s = sigmoid(x)
    return (1.0 - s) * s


def softmax(x: ArrayLike) -> NDArray[np.float64]:
    """Softmax over the last axis, for one vector (1-D) or a batch (2-D).

    The row maximum is subtracted first: softmax is unchanged by a shift, and exp never overflows.
    """
    a = np.asarray(x, dtype=np.float64)
    a = a - np.max(a, axis=-1, keepdims=True)
    e = np.exp(a)
    return e / np.sum(e, axis=-1, keepdims=True)


def sum_squared_error(y: ArrayLike, t: ArrayLike) -> float:
    """0.5 * sum((y - t)^2), the book's mean squared error (eq. 4.1)."""
    y_arr, t_arr = np.asarray(y, dtype=np.float64), np.asarray(t, dtype=np.float64)
    if y_arr.shape != t_arr.shape:
        raise ValueError(f"sum_squared_error: y has shape {y_arr.shape} but t has shape {t_arr.shape}")
    return float(0.5 * np.sum((y_arr - t_arr) ** 2))


def cross_entropy_error(y: ArrayLike, t: ArrayLike) -> float:
    """Mean cross-entropy over a batch (eq. 4.3), `DELTA` inside the log.

    y: (N, C) probabilities, or (C,) for one sample. t: one-hot with y's shape, or label indices (N,) / scalar.
    """
    y_arr = np.asarray(y, dtype=np.float64)
    t_arr = np.asarray(t)
    if y_arr.ndim == 1:
        y_arr = y_arr.reshape(1, -1)
        t_arr = t_arr.reshape(1, -1) if t_arr.size == y_arr.size else t_arr.reshape(1)
    if y_arr.ndim != 2:
        raise ValueError(f"cross_entropy_error: y must be 1-D or 2-D, got shape {y_arr.shape}")
    if t_arr.size == y_arr.size:
        if t_arr.shape != y_arr.shape:
            raise ValueError(f"cross_entropy_error: one-hot t has shape {t_arr.shape}, y has {y_arr.shape}")
        t_arr = t_arr.argmax(axis=1)
    labels = as_labels(t_arr, y_arr.shape[1], y_arr.shape[0])
    batch_size = y_arr.shape[0]
    return float(-np.sum(np.log(y_arr[np.arange(batch_size), labels] + DELTA)) / batch_size)


def as_labels(t: ArrayLike, n_classes: int, n_samples: int) -> NDArray[np.intp]:
    """Label indices (N,) checked against the number of classes and samples; raises ValueError if off."""
    t_arr = np.asarray(t)
    if t_arr.shape != (n_samples,):
        raise ValueError(f"labels: expected shape ({n_samples},), received {t_arr.shape}")
    if t_arr.size and not np.issubdtype(t_arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(t_arr, 1), 0)):
            raise ValueError(f"labels: expected integer class indices, received dtype {t_arr.dtype}")
    labels = t_arr.astype(np.intp)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels: expected values in [0, {n_classes - 1}], received min {labels.min()} max {labels.max()}"
        )
    return labels
