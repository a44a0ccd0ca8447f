"""The book's mini-batch SGD loop (section 4.5.2) as a steppable, checkpointable object.

`Trainer.step()` does one iteration exactly as the book's script does: draw a batch with replacement,
take the gradient, update every parameter, record the batch loss, and evaluate train and test accuracy
when `i % iter_per_epoch == 0`. The gradient comes from a function, so the same loop runs with the
in-process engine, a local process pool, or the service's workers, and gives the same bits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from zdl.engine import METHODS, gradient
from zdl.engine.threads import single_threaded_blas
from zdl.functions import cross_entropy_error
from zdl.history import History
from zdl.nets import PARAM_NAMES, Params, TwoLayerNet, backprop, count_correct, forward
from zdl.split_dot import split_dot

log = logging.getLogger(__name__)

Array = NDArray[Any]
Data = tuple[tuple[Array, Array], tuple[Array, Array]]
GradientFn = Callable[[Params, Array, Array], Params]


@dataclass(frozen=True)
class TrainConfig:
    """The book's run by default: 784-50-10 (sizes from the data), 10,000 iterations, batch 100, lr 0.1."""

    hidden_size: int = 50
    weight_init_std: float = 0.01
    iters: int = 10000
    batch_size: int = 100
    learning_rate: float = 0.1
    seed: int = 0
    gradient: str = "numerical"

    def __post_init__(self) -> None:
        positive = {"hidden_size": self.hidden_size, "iters": self.iters, "batch_size": self.batch_size}
        for name, value in positive.items():
            if int(value) != value or value < 1:
                raise ValueError(f"TrainConfig: {name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0 or not np.isfinite(self.learning_rate):
            raise ValueError(f"TrainConfig: learning_rate must be a positive number, got {self.learning_rate!r}")
        if not self.weight_init_std >= 0 or not np.isfinite(self.weight_init_std):
            raise ValueError(f"TrainConfig: weight_init_std must be >= 0, got {self.weight_init_std!r}")
        if self.gradient not in METHODS:
            raise ValueError(f"TrainConfig: gradient must be one of {list(METHODS)}, got {self.gradient!r}")


@dataclass(frozen=True)
class Progress:
    """What a callback sees after each iteration."""

    iteration: int  # iterations done, 1-based
    total: int
    loss: float
    elapsed: float
    train_acc: float | None = None  # set on iterations that evaluated
    test_acc: float | None = None


@dataclass
class TrainerState:
    """Everything needed to resume a run bit-for-bit: step, parameters, random generator, history."""

    step: int
    params: Params
    rng_state: Mapping[str, Any]
    history: History
    extra: dict[str, Any] = field(default_factory=dict)


def in_process_gradient(method: str) -> GradientFn:
    """A gradient function computed in this process: the engine's, or for backprop `backprop_gradient`."""
    if method == "backprop":
        return backprop_gradient
    return lambda params, x, t: gradient(params, x, t, method)


def backprop_gradient(params: Params, x: Array, t: Array) -> Params:
    """`zdl.engine.gradient(params, x, t, "backprop")` (the same bits) for a batch of data the Trainer has
    checked: without checking and copying the parameters and the batch every step, on one BLAS thread, with
    the products with x in two halves at once (`split_dot`)."""
    labels = t if t.ndim == 1 else t.argmax(axis=1)
    with single_threaded_blas():
        return backprop(params, np.ascontiguousarray(x, dtype=np.float64), labels, split_dot)


class Trainer:
    """One training run; call `step()` until `done`, or `run()`."""

    def __init__(
        self, data: Data, config: TrainConfig, gradient_fn: GradientFn | None = None, *, output_size: int = 10
    ) -> None:
        (self.x_train, self.t_train), (self.x_test, self.t_test) = data
        self.config = config
        train_size, input_size = self.x_train.shape[0], int(np.prod(self.x_train.shape[1:]))
        if self.t_train.ndim == 2:  # one-hot targets say how many classes there are
            output_size = self.t_train.shape[1]
        self.x_train = self.x_train.reshape(train_size, input_size)
        self.x_test = self.x_test.reshape(self.x_test.shape[0], -1)
        self.net = TwoLayerNet(input_size, config.hidden_size, output_size, config.weight_init_std, seed=config.seed)
        # Checked once here (a ValueError naming the problem), so that each step need not check its batch.
        self.train_labels = self.net.labels(self.t_train, train_size)
        self.test_labels = self.net.labels(self.t_test, self.x_test.shape[0])
        self.gradient_fn = gradient_fn or in_process_gradient(config.gradient)
        self.rng = np.random.default_rng([config.seed, 1])
        self.iter_per_epoch = max(train_size / config.batch_size, 1)
        self.step_index = 0
        self.history = History(config=asdict(config))
        self._started = time.perf_counter()

    @property
    def done(self) -> bool:
        return self.step_index >= self.config.iters

    def step(self) -> Progress:
        """One iteration of the book's loop."""
        i = self.step_index
        batch_mask = self.rng.choice(self.x_train.shape[0], self.config.batch_size)
        x_batch, t_batch = self.x_train[batch_mask], self.t_train[batch_mask]
        began = time.perf_counter()
        grad = self.gradient_fn(self.net.params, x_batch, t_batch)
        self.history.gradient_time += time.perf_counter() - began
        for key in PARAM_NAMES:
            self.net.params[key] -= self.config.learning_rate * grad[key]
        loss = self.batch_loss(x_batch, self.train_labels[batch_mask])
        self.history.loss.append(loss)
        train_acc = test_acc = None
        if i % self.iter_per_epoch == 0:
            train_acc, test_acc = self.evaluate()
            self.history.epoch_iters.append(i)
            self.history.train_acc.append(train_acc)
            self.history.test_acc.append(test_acc)
            log.info("iteration %d: train acc %.4f, test acc %.4f", i, train_acc, test_acc)
        self.step_index += 1
        self.history.wall_time += time.perf_counter() - self._started
        self._started = time.perf_counter()
        return Progress(self.step_index, self.config.iters, loss, self.history.wall_time, train_acc, test_acc)

    def batch_loss(self, x_batch: Array, labels: Array) -> float:
        """The loss after the update (the book's `network.loss(x_batch, t_batch)`), on one BLAS thread so that
        the recorded losses, like the weights, do not depend on the machine's thread count."""
        with single_threaded_blas():
            _, y = forward(self.net.params, np.asarray(x_batch, dtype=np.float64), split_dot)
            return cross_entropy_error(y, labels)

    def evaluate(self) -> tuple[float, float]:
        """Train and test accuracy, computed like the steps (one BLAS thread, `split_dot`): BLAS's own threads,
        woken here, would keep spinning on the core that the steps' second halves need."""
        with single_threaded_blas():
            train = count_correct(self.net.params, self.x_train, self.train_labels, split_dot)
            test = count_correct(self.net.params, self.x_test, self.test_labels, split_dot)
        return train / len(self.x_train), test / len(self.x_test)

    def run(self, callback: Callable[[Progress], object] | None = None) -> History:
        while not self.done:
            progress = self.step()
            if callback is not None:
                callback(progress)
        return self.history

    def state(self) -> TrainerState:
        """A snapshot (copies) for checkpointing."""
        params = {k: v.copy() for k, v in self.net.params.items()}
        history = History.from_dict(self.history.to_dict())
        return TrainerState(self.step_index, params, self.rng.bit_generator.state, history)

    def restore(self, state: TrainerState) -> None:
        """Continue from a snapshot taken by `state()` of a run with the same data and config."""
        for key in PARAM_NAMES:
            if state.params[key].shape != self.net.params[key].shape:
                raise ValueError(
                    f"restore: {key} has shape {state.params[key].shape}, expected {self.net.params[key].shape}"
                )
            self.net.params[key] = np.array(state.params[key], dtype=np.float64)
        self.rng.bit_generator.state = state.rng_state
        self.step_index = state.step
        self.history = History.from_dict(state.history.to_dict())
        self._started = time.perf_counter()


def train(
    data: Data,
    config: TrainConfig | None = None,
    *,
    gradient_fn: GradientFn | None = None,
    callback: Callable[[Progress], object] | None = None,
) -> tuple[TwoLayerNet, History]:
    """Run the book's training loop to the end; returns the trained net and its history."""
    trainer = Trainer(data, config or TrainConfig(), gradient_fn)
    history = trainer.run(callback)
    return trainer.net, history
