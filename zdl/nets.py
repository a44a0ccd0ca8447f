"""The book's networks: `SimpleNet` (section 4.4.2, also as the book's `simpleNet`) and `TwoLayerNet` (4.5)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zdl.functions import DELTA, as_labels, cross_entropy_error, sigmoid, softmax
from zdl.gradient import numerical_gradient

Array = NDArray[np.float64]
Params = dict[str, Array]
#: A matrix product a @ b: np.dot, or the training loop's `zdl.split_dot.split_dot` (the same bits).
Dot = Callable[[Array, Array], Array]
PARAM_NAMES = ("W1", "b1", "W2", "b2")
#: Rows predicted at a time by `count_correct` (26% less CPU than all 15,000 of an evaluation at once).
ACCURACY_CHUNK = 1000


class SimpleNet:
    """A 2x3 single-layer net with softmax output, the book's first gradient example."""

    def __init__(self, *, seed: int | None = None) -> None:
        self.W = np.random.default_rng(seed).standard_normal((2, 3))

    def predict(self, x: ArrayLike) -> NDArray[np.float64]:
        return np.dot(np.asarray(x, dtype=np.float64), self.W)

    def loss(self, x: ArrayLike, t: ArrayLike) -> float:
        return cross_entropy_error(softmax(self.predict(x)), t)

    def numerical_gradient(self, x: ArrayLike, t: ArrayLike) -> NDArray[np.float64]:
        """dL/dW by central differences (the book's `numerical_gradient(f, net.W)`)."""
        return numerical_gradient(lambda _w: self.loss(x, t), self.W)


#: The book's spelling (`net = simpleNet()` in ch04/gradient_simplenet.py), so its code runs as printed.
simpleNet = SimpleNet


class TwoLayerNet:
    """input -> affine -> sigmoid -> affine -> softmax, with parameters in `params` (W1 b1 W2 b2).

    Shapes: W1 (input, hidden), b1 (hidden,), W2 (hidden, output), b2 (output,). Targets `t` may be
    one-hot (N, output) or label indices (N,).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        weight_init_std: float = 0.01,
        *,
        seed: int | None = None,
    ) -> None:
        for name, size in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("output_size", output_size),
        ):
            if int(size) != size or size < 1:
                raise ValueError(f"TwoLayerNet: {name} must be a positive integer, got {size!r}")
        rng = np.random.default_rng(seed)
        self.params: Params = {
            "W1": weight_init_std * rng.standard_normal((input_size, hidden_size)),
            "b1": np.zeros(hidden_size),
            "W2": weight_init_std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(input_size, hidden_size, output_size)."""
        input_size, hidden_size = self.params["W1"].shape
        return input_size, hidden_size, self.params["W2"].shape[1]

    @classmethod
    def from_params(cls, params: Mapping[str, ArrayLike]) -> TwoLayerNet:
        """A net holding copies of `params` (for example an `.npz` of W1 b1 W2 b2), shapes checked."""
        missing = [k for k in PARAM_NAMES if k not in params]
        if missing:
            raise ValueError(f"TwoLayerNet.from_params: missing parameters {missing}; expected {list(PARAM_NAMES)}")
        arrays = {k: np.array(params[k], dtype=np.float64) for k in PARAM_NAMES}
        for key in ("W1", "W2"):
            if arrays[key].ndim != 2:
                raise ValueError(f"TwoLayerNet.from_params: {key} must be 2-D, got shape {arrays[key].shape}")
        input_size, hidden_size = arrays["W1"].shape
        output_size = arrays["W2"].shape[1]
        expected = {"b1": (hidden_size,), "W2": (hidden_size, output_size), "b2": (output_size,)}
        for key, shape in expected.items():
            if arrays[key].shape != shape:
                raise ValueError(f"TwoLayerNet.from_params: {key} has shape {arrays[key].shape}, expected {shape}")
        net = cls.__new__(cls)  # not __init__: drawing random weights only to replace them costs more than the copy
        net.params = arrays
        return net

    def check_batch(self, x: ArrayLike, dtype: type | None = np.float64) -> NDArray[Any]:
        """x as an (N, input_size) array of `dtype` (None: as it is), or a ValueError naming the expected and
        received shapes."""
        x_arr = np.asarray(x, dtype=dtype)
        input_size = self.params["W1"].shape[0]
        if x_arr.ndim == 1:
            x_arr = x_arr.reshape(1, -1)
        if x_arr.ndim != 2 or x_arr.shape[1] != input_size:
            raise ValueError(
                f"TwoLayerNet: expected a batch of shape (N, {input_size}) (input_size={input_size}), "
                f"received shape {np.shape(x)}"
            )
        return x_arr

    def labels(self, t: ArrayLike, n_samples: int) -> NDArray[np.intp]:
        """Label indices from one-hot or index targets, checked against output_size and the batch."""
        t_arr = np.asarray(t)
        output_size = self.params["W2"].shape[1]
        if t_arr.ndim == 2:
            if t_arr.shape != (n_samples, output_size):
                raise ValueError(
                    f"TwoLayerNet: one-hot targets must have shape ({n_samples}, {output_size}), received {t_arr.shape}"
                )
            return t_arr.argmax(axis=1).astype(np.intp)
        return as_labels(t_arr.reshape(-1) if t_arr.ndim == 0 else t_arr, output_size, n_samples)

    def predict(self, x: ArrayLike) -> NDArray[np.float64]:
        """Softmax probabilities (N, output_size)."""
        return forward(self.params, self.check_batch(x))[1]

    def loss(self, x: ArrayLike, t: ArrayLike) -> float:
        """Mean cross-entropy of the batch."""
        y = self.predict(x)
        return cross_entropy_error(y, self.labels(t, y.shape[0]))

    def accuracy(self, x: ArrayLike, t: ArrayLike) -> float:
        """Fraction of samples whose most probable class is the target."""
        x_arr = self.check_batch(x, dtype=None)
        return count_correct(self.params, x_arr, self.labels(t, x_arr.shape[0])) / x_arr.shape[0]

    def numerical_gradient(self, x: ArrayLike, t: ArrayLike) -> Params:
        """The book's numerical gradient: two full loss evaluations per parameter entry (slow, the oracle)."""
        x_arr = self.check_batch(x)
        labels = self.labels(t, x_arr.shape[0])
        return {key: numerical_gradient(lambda _w: self.loss(x_arr, labels), self.params[key]) for key in PARAM_NAMES}

    def gradient(self, x: ArrayLike, t: ArrayLike) -> Params:
        """Backpropagation, the book's "fast version" of the gradient (same keys as `params`)."""
        x_arr = self.check_batch(x)
        return backprop(self.params, x_arr, self.labels(t, x_arr.shape[0]))


def forward(params: Params, x: Array, dot: Dot = np.dot) -> tuple[Array, Array]:
    """(z1, y) of a checked batch x (N, input_size) float64: the hidden outputs (N, hidden) and the softmax
    probabilities (N, output). No checks: `TwoLayerNet` checks each call; the training loop, which calls
    this every step, checks its data once. `dot` computes x @ W1 (the training loop's is `split_dot`)."""
    z1 = sigmoid(dot(x, params["W1"]) + params["b1"])
    return z1, softmax(np.dot(z1, params["W2"]) + params["b2"])


def count_correct(params: Params, x: NDArray[Any], labels: NDArray[np.integer], dot: Dot = np.dot) -> int:
    """How many rows of a checked x (N, input_size), any float dtype, `forward` classifies as `labels` (N,).

    Predicted ACCURACY_CHUNK rows at a time: a chunk's float64 copy stays in the CPU cache, so this is
    faster than converting all of a float32 data set at once, and needs no second copy of it.
    """
    correct = 0
    for start in range(0, x.shape[0], ACCURACY_CHUNK):
        _, y = forward(params, np.asarray(x[start : start + ACCURACY_CHUNK], dtype=np.float64), dot)
        correct += int(np.count_nonzero(np.argmax(y, axis=1) == labels[start : start + ACCURACY_CHUNK]))
    return correct


def backprop(params: Params, x: Array, labels: NDArray[np.integer], dot: Dot = np.dot) -> Params:
    """The gradient of the mean cross-entropy (1e-7 inside the log) by backpropagation, for a checked batch:
    x (N, input_size) float64, labels (N,) class indices. Returns {W1, b1, W2, b2} in the params' shapes.
    `dot` computes the two products with x, as in `forward`."""
    batch_num = x.shape[0]
    z1, y = forward(params, x, dot)
    # d/da2 of -log(y_t + 1e-7): (y - onehot(t)) * y_t / (y_t + 1e-7). The book drops the last factor
    # (about 1e-6 relative); keeping it makes this the exact gradient of `loss`, as the gradient check expects.
    rows = np.arange(batch_num)
    y_t = y[rows, labels]
    dy = y.copy()
    dy[rows, labels] -= 1
    dy *= (y_t / (y_t + DELTA) / batch_num)[:, None]
    da1 = np.dot(dy, params["W2"].T) * ((1.0 - z1) * z1)  # sigmoid_grad(a1) = (1 - z1) z1
    return {
        "W1": dot(x.T, da1),
        "b1": np.sum(da1, axis=0),
        "W2": np.dot(z1.T, dy),
        "b2": np.sum(dy, axis=0),
    }
