"""The chapter's figures and a training run's curves, rendered to PNG bytes (book figures 4-7 to 4-11).

Only matplotlib's object-oriented API is used (a `Figure` with its own Agg canvas, never pyplot), so no
global state is touched and the functions are safe to call from several threads of a web server.
Each figure is built by a `*_figure` function that returns the `Figure` (what is drawn, for tests and
notebooks); the function of the figure's own name returns it as PNG bytes; `save_png` writes them atomically.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike, NDArray

from zdl.gradient import gradient_descent, numerical_diff, numerical_gradient
from zdl.history import History
from zdl.io import atomic_write_bytes

log = logging.getLogger(__name__)

#: Rendering resolution: one inch of figure is DPI pixels.
DPI = 100
#: Pixel size (width, height) of every figure except `digit_grid`: matplotlib's default 6.4 x 4.8 in.
FIGURE_PX = (640, 480)
#: `digit_grid` is min(ncols, N) cells wide and ceil(N / ncols) cells tall, each cell this many pixels square.
DIGIT_CELL_PX = 64
#: Largest image count `digit_grid` / `first_layer_weights` accept, so a request cannot build a huge figure.
MAX_IMAGES = 400

HistoryLike = History | Mapping[str, Any]


def _new_figure(width_px: int = FIGURE_PX[0], height_px: int = FIGURE_PX[1]) -> Figure:
    """A figure of exactly width_px x height_px once rendered.

    Agg truncates width_in * dpi to an int, and e.g. 0.29 * 100 is 28.999..., so half a pixel is added.
    """
    fig = Figure(figsize=((width_px + 0.5) / DPI, (height_px + 0.5) / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _to_png(fig: Figure) -> bytes:
    """Render fig to PNG bytes; the Software tag is dropped so equal figures give equal bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def save_png(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write PNG bytes atomically: readers never see half a PNG."""
    return atomic_write_bytes(path, data)


def _as_history(history: HistoryLike) -> History:
    if isinstance(history, History):
        return history
    if isinstance(history, Mapping):
        return History.from_dict(dict(history))
    raise ValueError(f"expected a History or a dict of its fields, got {type(history).__name__}")


def _histories(histories: Mapping[str, HistoryLike]) -> dict[str, History]:
    if not histories:
        raise ValueError("no histories to plot: the mapping is empty")
    return {name: _as_history(h) for name, h in histories.items()}


def _finite(values: Sequence[float], what: str) -> NDArray[np.float64]:
    """values as an array with inf/nan as nan, so a diverged run is drawn with gaps instead of failing."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        log.warning("%s has %d non-finite values; they are left out of the plot", what, (~np.isfinite(arr)).sum())
        arr = np.where(np.isfinite(arr), arr, np.nan)
    return arr


def loss_figure(histories: Mapping[str, HistoryLike]) -> Figure:
    """Mini-batch loss per iteration (book figure 4-11), one line per named run, to compare runs."""
    runs = _histories(histories)
    fig = _new_figure()
    ax = fig.add_subplot()
    for name, h in runs.items():
        if not h.loss:
            raise ValueError(f"history {name!r} has no loss values")
        loss = _finite(h.loss, f"loss of {name!r}")
        ax.plot(np.arange(len(loss)), loss, label=name or None, linewidth=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    if any(runs):
        ax.legend(loc="upper right")
    return fig


def loss_curves(histories: Mapping[str, HistoryLike]) -> bytes:
    """`loss_figure` as PNG bytes."""
    return _to_png(loss_figure(histories))


def loss_curve(history: HistoryLike, label: str = "") -> bytes:
    """One run's loss per iteration; a legend only if label is given."""
    return loss_curves({label: history})


def _check_accuracy(name: str, h: History) -> None:
    if not h.train_acc:
        raise ValueError(f"history {name!r} has no accuracy values (train_acc is empty)")
    if len(h.train_acc) != len(h.test_acc):
        raise ValueError(
            f"history {name!r}: train_acc has {len(h.train_acc)} values but test_acc has {len(h.test_acc)}"
        )


def accuracy_figure(histories: Mapping[str, HistoryLike]) -> Figure:
    """Train (solid) and test (dashed) accuracy per epoch, one colour per named run (book figure 4-12)."""
    runs = _histories(histories)
    fig = _new_figure()
    ax = fig.add_subplot()
    for i, (name, h) in enumerate(runs.items()):
        _check_accuracy(name, h)
        epochs = np.arange(len(h.train_acc))
        prefix = f"{name} " if name else ""
        # One run: the book's two colours. Several: one colour per run, solid train and dashed test.
        train_color, test_color = ("C0", "C1") if len(runs) == 1 else (f"C{i % 10}", f"C{i % 10}")
        every = max(1, len(epochs) // 20)
        ax.plot(epochs, _finite(h.train_acc, "train_acc"), color=train_color, marker="o", label=f"{prefix}train acc",
                markevery=every, markersize=4)
        ax.plot(epochs, _finite(h.test_acc, "test_acc"), color=test_color, marker="s", linestyle="--",
                label=f"{prefix}test acc", markevery=every, markersize=4)
    ax.set_xlabel("epochs")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.0)
    ax.legend(loc="lower right")
    return fig


def accuracy_curves_compare(histories: Mapping[str, HistoryLike]) -> bytes:
    """`accuracy_figure` as PNG bytes."""
    return _to_png(accuracy_figure(histories))


def accuracy_curves(history: HistoryLike) -> bytes:
    """One run's train and test accuracy per epoch, as in the book's figure 4-12."""
    return accuracy_curves_compare({"": history})


def _function_2(x: NDArray[np.float64]) -> float:
    """The book's f(x0, x1) = x0^2 + x1^2."""
    return float(np.sum(x**2))


def gradient_field_data() -> tuple[NDArray[np.float64], ...]:
    """(X, Y, U, V) of figure 4-9: grid points and the negative gradient there, by numerical_gradient per point.

    The grid is the book's np.arange(-2, 2.5, 0.25) in each axis (so -2 .. 2.25), flattened to 1-D.
    """
    axis = np.arange(-2, 2.5, 0.25)
    X, Y = (a.ravel() for a in np.meshgrid(axis, axis))
    grad = np.array([numerical_gradient(_function_2, np.array([x, y])) for x, y in zip(X, Y, strict=True)])
    return X, Y, -grad[:, 0], -grad[:, 1]


def gradient_field_figure() -> Figure:
    """Figure 4-9: the negative gradient points toward the minimum at the origin, longer further away."""
    X, Y, U, V = gradient_field_data()
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.quiver(X, Y, U, V, angles="xy", color="#666666")
    ax.set_xlim(-2, 2)
    ax.set_ylim(-2, 2)
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.grid()
    return fig


def gradient_field() -> bytes:
    """`gradient_field_figure` as PNG bytes."""
    return _to_png(gradient_field_figure())


def gradient_descent_figure(init_x: ArrayLike = (-3.0, 4.0), lr: float = 0.1, step_num: int = 20) -> Figure:
    """Figure 4-10: the points gradient descent visits on x0^2 + x1^2, heading for the origin."""
    if step_num < 1:
        raise ValueError(f"step_num must be at least 1, got {step_num}")
    x0 = np.asarray(init_x, dtype=np.float64)
    if x0.shape != (2,):
        raise ValueError(f"init_x must be two numbers (x0, x1), got shape {x0.shape}")
    _, path = gradient_descent(_function_2, x0, lr=lr, step_num=step_num)
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.axhline(0, color="b", linestyle="--")
    ax.axvline(0, color="b", linestyle="--")
    ax.plot(path[:, 0], path[:, 1], "o")
    ax.set_xlim(-3.5, 3.5)
    ax.set_ylim(-4.5, 4.5)
    ax.set_xlabel("X0")
    ax.set_ylabel("X1")
    return fig


def gradient_descent_path(init_x: ArrayLike = (-3.0, 4.0), lr: float = 0.1, step_num: int = 20) -> bytes:
    """`gradient_descent_figure` as PNG bytes."""
    return _to_png(gradient_descent_figure(init_x, lr, step_num))


def tangent_figure() -> Figure:
    """Figure 4-7: f(x) = 0.01x^2 + 0.1x and its tangent at x = 5, slope from numerical_diff (about 0.2)."""

    def f(x: Any) -> Any:
        return 0.01 * x**2 + 0.1 * x

    x = np.arange(0.0, 20.0, 0.1)
    slope = numerical_diff(f, 5.0)
    tangent = slope * (x - 5.0) + f(5.0)
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.plot(x, f(x), label="f(x)")
    ax.plot(x, tangent, label=f"tangent at x=5 (slope {slope:.4f})")
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.legend(loc="upper left")
    return fig


def tangent_line() -> bytes:
    """`tangent_figure` as PNG bytes."""
    return _to_png(tangent_figure())


def surface_figure() -> Figure:
    """Figure 4-8: the bowl x0^2 + x1^2 whose gradient figures 4-9 and 4-10 follow."""
    axis = np.arange(-3.0, 3.01, 0.25)
    X, Y = np.meshgrid(axis, axis)
    fig = _new_figure()
    ax: Any = fig.add_subplot(projection="3d")
    ax.plot_surface(X, Y, X**2 + Y**2, cmap="viridis", edgecolor="none")
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.set_zlabel("f(x)")
    return fig


def surface_3d() -> bytes:
    """`surface_figure` as PNG bytes."""
    return _to_png(surface_figure())


def _as_square_images(images: ArrayLike) -> NDArray[np.float64]:
    """(N, D) with D a perfect square, (N, h, w) or (N, 1, h, w) -> (N, h, w)."""
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 2:
        side = math.isqrt(arr.shape[1])
        if side * side != arr.shape[1] or side == 0:
            raise ValueError(f"images of shape {arr.shape}: {arr.shape[1]} pixels is not a square image")
        arr = arr.reshape(len(arr), side, side)
    if arr.ndim != 3:
        raise ValueError(f"images must be (N, 784), (N, 28, 28) or (N, 1, 28, 28), got shape {arr.shape}")
    if not 1 <= len(arr) <= MAX_IMAGES:
        raise ValueError(f"need 1 to {MAX_IMAGES} images, got {len(arr)}")
    return arr


def _image_axes(fig: Figure, n: int, ncols: int) -> list[Any]:
    """n axes without ticks in rows of ncols, filling fig."""
    nrows = math.ceil(n / ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    return list(axes[:n])


def digit_grid_figure(images: ArrayLike, labels: Sequence[Any] | None = None, ncols: int = 10) -> Figure:
    """MNIST-style images in a grid (black on white as in the book), each titled with its label if given."""
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    imgs = _as_square_images(images)
    if labels is not None and len(labels) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(labels)} labels")
    ncols = min(ncols, len(imgs))
    nrows = math.ceil(len(imgs) / ncols)
    fig = _new_figure(ncols * DIGIT_CELL_PX, nrows * DIGIT_CELL_PX)
    top = 0.8 if labels is not None else 0.95
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - (1 - top) / nrows, hspace=0.3)
    for i, ax in enumerate(_image_axes(fig, len(imgs), ncols)):
        ax.imshow(imgs[i], cmap="gray_r", interpolation="nearest")
        if labels is not None:
            ax.set_title(str(labels[i]), fontsize=8, pad=2)
    return fig


def digit_grid(images: ArrayLike, labels: Sequence[Any] | None = None, ncols: int = 10) -> bytes:
    """`digit_grid_figure` as PNG bytes."""
    return _to_png(digit_grid_figure(images, labels, ncols))


def first_layer_weights_figure(W1: ArrayLike, ncols: int = 10) -> Figure:
    """Each hidden unit's incoming weights (a column of W1, shape (784, H)) as a 28x28 image: what it looks for.

    Red is a positive weight, blue negative; each unit is scaled to its own largest |w| so that small and
    large units are equally readable, with white at exactly zero.
    """
    W = np.asarray(W1, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W1 must be 2-D (input_size, hidden_size), got shape {W.shape}")
    side = math.isqrt(W.shape[0])
    if side == 0 or side * side != W.shape[0]:
        raise ValueError(f"W1 of shape {W.shape}: input size {W.shape[0]} is not a perfect square")
    if not 1 <= W.shape[1] <= MAX_IMAGES:
        raise ValueError(f"W1 of shape {W.shape}: need 1 to {MAX_IMAGES} hidden units")
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    fig = _new_figure()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.98, wspace=0.05, hspace=0.05)
    for j, ax in enumerate(_image_axes(fig, W.shape[1], min(ncols, W.shape[1]))):
        vmax = float(np.max(np.abs(W[:, j]))) or 1.0
        ax.imshow(W[:, j].reshape(side, side), cmap="bwr", vmin=-vmax, vmax=vmax, interpolation="nearest")
    return fig


def first_layer_weights(W1: ArrayLike, ncols: int = 10) -> bytes:
    """`first_layer_weights_figure` as PNG bytes."""
    return _to_png(first_layer_weights_figure(W1, ncols))


def _write_all(figures: Mapping[str, bytes], out_dir: str | os.PathLike[str]) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [save_png(data, out / name) for name, data in figures.items()]
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths


def write_figures(out_dir: str | os.PathLike[str]) -> list[Path]:
    """The chapter's figures as gradient_field.png, gradient_descent.png, tangent.png, surface.png."""
    return _write_all(
        {
            "gradient_field.png": gradient_field(),
            "gradient_descent.png": gradient_descent_path(),
            "tangent.png": tangent_line(),
            "surface.png": surface_3d(),
        },
        out_dir,
    )


def write_training_plots(history: HistoryLike, out_dir: str | os.PathLike[str]) -> list[Path]:
    """A run's loss.png and accuracy.png; both are rendered before either is written."""
    return _write_all({"loss.png": loss_curve(history), "accuracy.png": accuracy_curves(history)}, out_dir)
