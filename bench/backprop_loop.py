"""`zdl train --gradient backprop` against the book's own ch04 loop, side by side on the same data (issue 12.5).

The book's `ch04/two_layer_net.py` (TwoLayerNet with predict, loss, accuracy and the backprop `gradient`)
and `ch04/train_neuralnet.py` (the loop with `batch_mask` and the per-epoch train/test accuracy) are
written out below as the book has them; only `np.random.seed` is added, so every repeat is the same run.
zdl's side is what `zdl train --gradient backprop --no-progress` runs after loading the data: a `Trainer`
with the CLI's progress callback. Both get the same arrays (float32 pixels; one-hot labels for the book,
as its script asks for, class indices for zdl), and runs alternate (book, zdl, zdl, book, ...) so that a
change in machine load hits both. Prints the median wall and CPU time of each, and the ratio zdl / book.

    python bench/backprop_loop.py [--iters 10000] [--repeats 5] [--data-dir DIR]

Data: `load_mnist`'s search (`--data-dir`, `$ZDL_DATA_DIR`, the cache, a download).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

from zdl.cli import progress_bar
from zdl.datasets import load_mnist
from zdl.train import TrainConfig, Trainer

# --- the book's code (common/functions.py, ch04/two_layer_net.py, ch04/train_neuralnet.py) ---------------

def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def sigmoid_grad(x):
    return (1.0 - sigmoid(x)) * sigmoid(x)


def softmax(x):
    x = x - np.max(x, axis=-1, keepdims=True)  # guard against overflow
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    # one-hot targets: turn them into the indices of the correct labels
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


class BookTwoLayerNet:
    """ch04/two_layer_net.py's TwoLayerNet (its slow `numerical_gradient` is not used by the loop)."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01):
        self.params = {}
        self.params["W1"] = weight_init_std * np.random.randn(input_size, hidden_size)
        self.params["b1"] = np.zeros(hidden_size)
        self.params["W2"] = weight_init_std * np.random.randn(hidden_size, output_size)
        self.params["b2"] = np.zeros(output_size)

    def predict(self, x):
        W1, W2 = self.params["W1"], self.params["W2"]
        b1, b2 = self.params["b1"], self.params["b2"]
        a1 = np.dot(x, W1) + b1
        z1 = sigmoid(a1)
        a2 = np.dot(z1, W2) + b2
        y = softmax(a2)
        return y

    def loss(self, x, t):
        y = self.predict(x)
        return cross_entropy_error(y, t)

    def accuracy(self, x, t):
        y = self.predict(x)
        y = np.argmax(y, axis=1)
        t = np.argmax(t, axis=1)
        accuracy = np.sum(y == t) / float(x.shape[0])
        return accuracy

    def gradient(self, x, t):
        W1, W2 = self.params["W1"], self.params["W2"]
        b1, b2 = self.params["b1"], self.params["b2"]
        grads = {}
        batch_num = x.shape[0]
        # forward
        a1 = np.dot(x, W1) + b1
        z1 = sigmoid(a1)
        a2 = np.dot(z1, W2) + b2
        y = softmax(a2)
        # backward
        dy = (y - t) / batch_num
        grads["W2"] = np.dot(z1.T, dy)
        grads["b2"] = np.sum(dy, axis=0)
        dz1 = np.dot(dy, W2.T)
        da1 = sigmoid_grad(a1) * dz1
        grads["W1"] = np.dot(x.T, da1)
        grads["b1"] = np.sum(da1, axis=0)
        return grads


def book_train(x_train, t_train, x_test, t_test, iters_num: int, seed: int) -> float:
    """ch04/train_neuralnet.py up to the plot; returns the last test accuracy."""
    np.random.seed(seed)
    network = BookTwoLayerNet(input_size=784, hidden_size=50, output_size=10)
    train_size = x_train.shape[0]
    batch_size = 100
    learning_rate = 0.1
    train_loss_list = []
    train_acc_list = []
    test_acc_list = []
    iter_per_epoch = max(train_size / batch_size, 1)
    for i in range(iters_num):
        batch_mask = np.random.choice(train_size, batch_size)
        x_batch = x_train[batch_mask]
        t_batch = t_train[batch_mask]
        grad = network.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= learning_rate * grad[key]
        loss = network.loss(x_batch, t_batch)
        train_loss_list.append(loss)
        if i % iter_per_epoch == 0:
            train_acc = network.accuracy(x_train, t_train)
            test_acc = network.accuracy(x_test, t_test)
            train_acc_list.append(train_acc)
            test_acc_list.append(test_acc)
    return float(test_acc_list[-1])


# --- zdl's side, and the measurement -------------------------------------------------------------------

def zdl_train(data, iters: int, seed: int) -> float:
    """What `zdl train --gradient backprop --no-progress --iters N --seed S` runs once the data is loaded."""
    trainer = Trainer(data, TrainConfig(iters=iters, seed=seed, gradient="backprop"), output_size=10)
    history = trainer.run(progress_bar(iters, disable=True))
    return history.test_acc[-1]


def timed(run: Callable[[], float]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of this process, the run's result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10000, help="iterations per run (default: the book's 10000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each side (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST files (default: load_mnist finds them)")
    args = parser.parse_args(argv)

    (x_train, t_train), (x_test, t_test) = data = load_mnist(data_dir=args.data_dir)
    onehot = np.eye(10)  # the book's _change_one_hot_label gives float64 rows
    book_data = (x_train, onehot[t_train], x_test, onehot[t_test])
    sides: dict[str, Callable[[], float]] = {
        "book's loop (train_neuralnet.py)": lambda: book_train(*book_data, args.iters, args.seed),
        "zdl train --gradient backprop": lambda: zdl_train(data, args.iters, args.seed),
    }
    names = list(sides)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            results[name].append(timed(sides[name]))

    blas = ", ".join(f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
                     for i in threadpool_info() if i["user_api"] == "blas")
    out(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__}; "
        f"BLAS: {blas}")
    out(f"data: {len(x_train)} training, {len(x_test)} test images; 784-50-10, batch 100, lr 0.1, "
        f"{args.iters} iterations, evaluation every {max(len(x_train) / 100, 1):g}; {args.repeats} runs each, "
        f"alternating")
    out(f"| {'loop':<34} | {'wall s (median)':>15} | {'CPU s (median)':>14} | {'final test acc':>14} |")
    out(f"|{'-' * 36}|{'-' * 16}:|{'-' * 15}:|{'-' * 15}:|")
    medians: dict[str, tuple[float, float]] = {}
    for name in names:
        wall, cpu, acc = (statistics.median(column) for column in zip(*results[name], strict=True))
        medians[name] = (wall, cpu)
        out(f"| {name:<34} | {wall:>15.2f} | {cpu:>14.2f} | {acc:>14.4f} |")
    for name in names:
        out(f"{name}: wall " + " ".join(f"{r[0]:.2f}" for r in results[name]) + " s")
    (book_wall, book_cpu), (zdl_wall, zdl_cpu) = medians[names[0]], medians[names[1]]
    out(f"zdl / book: {zdl_wall / book_wall:.2f}x wall time, {zdl_cpu / book_cpu:.2f}x CPU time")


if __name__ == "__main__":
    main()
