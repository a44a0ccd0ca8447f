"""zdl.plot: every figure is a PNG of the documented size; the figure-4-9 data matches the analytic gradient."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from zdl import plot
from zdl.history import History

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which the PNG spec requires to come first."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def history() -> History:
    rng = np.random.default_rng(0)
    loss = list(2.3 * np.exp(-np.arange(300) / 80) + 0.1 * rng.random(300))
    return History(
        loss=loss,
        epoch_iters=[0, 100, 200],
        train_acc=[0.1, 0.8, 0.9],
        test_acc=[0.1, 0.78, 0.88],
    )


FIXED_SIZE_FIGURES: dict[str, Callable[[History], bytes]] = {
    "loss_curve": plot.loss_curve,
    "loss_curve_dict": lambda h: plot.loss_curve(h.to_dict()),
    "loss_curves": lambda h: plot.loss_curves({"lr=0.1": h, "lr=0.5": h.to_dict()}),
    "accuracy_curves": plot.accuracy_curves,
    "accuracy_curves_compare": lambda h: plot.accuracy_curves_compare({"a": h, "b": h}),
    "gradient_field": lambda h: plot.gradient_field(),
    "gradient_descent_path": lambda h: plot.gradient_descent_path(),
    "tangent_line": lambda h: plot.tangent_line(),
    "surface_3d": lambda h: plot.surface_3d(),
    "first_layer_weights": lambda h: plot.first_layer_weights(np.random.default_rng(0).normal(size=(784, 50))),
}


@pytest.mark.parametrize("name", FIXED_SIZE_FIGURES)
def test_figure_is_png_of_documented_size(name: str, history: History) -> None:
    assert png_size(FIXED_SIZE_FIGURES[name](history)) == plot.FIGURE_PX


@pytest.mark.parametrize(
    ("shape", "ncols", "grid"),
    [((25, 784), 10, (10, 3)), ((7, 28, 28), 10, (7, 1)), ((29, 1, 28, 28), 3, (3, 10))],
)
def test_digit_grid_size(shape: tuple[int, ...], ncols: int, grid: tuple[int, int]) -> None:
    images = np.random.default_rng(0).random(shape)
    data = plot.digit_grid(images, labels=list(range(shape[0])), ncols=ncols)
    assert png_size(data) == (grid[0] * plot.DIGIT_CELL_PX, grid[1] * plot.DIGIT_CELL_PX)


def test_same_input_gives_same_bytes(history: History) -> None:
    assert plot.loss_curve(history) == plot.loss_curve(history)


def test_gradient_field_points_to_origin() -> None:
    X, Y, U, V = plot.gradient_field_data()
    assert X.shape == Y.shape == U.shape == V.shape == (18 * 18,)
    assert X.min() == -2.0 and X.max() == 2.25
    # analytic gradient of x0^2 + x1^2 is (2x0, 2x1), so the arrows are -2 * position
    np.testing.assert_allclose(U, -2 * X, atol=1e-6)
    np.testing.assert_allclose(V, -2 * Y, atol=1e-6)


def test_write_figures(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir"
    paths = plot.write_figures(out)
    names = {"gradient_field.png", "gradient_descent.png", "tangent.png", "surface.png"}
    assert {p.name for p in paths} == names
    assert {p.name for p in out.iterdir()} == names
    assert all(p.read_bytes()[:8] == PNG_SIGNATURE for p in paths)


def test_write_training_plots(history: History, tmp_path: Path) -> None:
    paths = plot.write_training_plots(history, tmp_path)
    assert [p.name for p in paths] == ["loss.png", "accuracy.png"]
    assert all(png_size(p.read_bytes()) == plot.FIGURE_PX for p in paths)


def test_save_png_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(b"old")
    plot.save_png(b"new", target)
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_save_png_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "is_a_dir"
    target.mkdir()
    with pytest.raises(OSError):
        plot.save_png(b"data", target)  # os.replace cannot put a file over a directory
    assert [p.name for p in tmp_path.iterdir()] == ["is_a_dir"]


def test_diverged_loss_still_plots() -> None:
    assert png_size(plot.loss_curve(History(loss=[2.3, 1.0, float("inf"), float("nan")]))) == plot.FIGURE_PX


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: plot.loss_curve(History()), "no loss"),
        (lambda: plot.loss_curve({}), "no loss"),
        (lambda: plot.loss_curves({}), "empty"),
        (lambda: plot.accuracy_curves(History(loss=[1.0])), "train_acc is empty"),
        (lambda: plot.accuracy_curves(History(train_acc=[0.1, 0.2], test_acc=[0.1])), "test_acc has 1"),
        (lambda: plot.accuracy_curves_compare({}), "empty"),
        (lambda: plot.loss_curve([1.0, 2.0]), "list"),  # type: ignore[arg-type]
        (lambda: plot.first_layer_weights(np.zeros((785, 10))), r"\(785, 10\)"),
        (lambda: plot.first_layer_weights(np.zeros(784)), r"\(784,\)"),
        (lambda: plot.digit_grid(np.zeros((3, 785))), r"\(3, 785\)"),
        (lambda: plot.digit_grid(np.zeros((3, 2, 28, 28))), r"\(3, 2, 28, 28\)"),
        (lambda: plot.digit_grid(np.zeros((0, 784))), "got 0"),
        (lambda: plot.digit_grid(np.zeros((3, 784)), labels=[1, 2]), "3 images but 2 labels"),
        (lambda: plot.gradient_descent_path(init_x=(1.0, 2.0, 3.0)), r"\(3,\)"),
        (lambda: plot.gradient_descent_path(step_num=0), "step_num"),
    ],
)
def test_bad_input_raises(call: Callable[[], bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
