"""zdl.plot: what each figure draws (its artists' data, and the colours Agg renders where they must be), and
that every figure is a PNG of the documented size holding exactly those pixels.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.image import imread

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


def rendered(fig: Figure) -> np.ndarray:
    """The figure's RGBA pixels (height, width, 4) uint8, row 0 at the top, as Agg draws them."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()


def png_pixels(data: bytes) -> np.ndarray:
    return (imread(io.BytesIO(data), format="png") * 255).round().astype(np.uint8)


def drawn_at(fig: Figure, ax, xy: tuple[float, float], colour, pixels: np.ndarray, radius: int = 2) -> bool:
    """Whether a pixel within `radius` of data point xy is at least half `colour` (lines are antialiased, so
    the pixel nearest a line's centre is a blend of the line's colour and what is behind it); for white, one
    within 0.1 of it."""
    px, py = ax.transData.transform(xy)
    assert ax.get_window_extent().contains(px, py), f"{xy} is outside the axes"
    row, col = int(round(pixels.shape[0] - py)), int(round(px))
    window = pixels[max(row - radius, 0): row + radius + 1, max(col - radius, 0): col + radius + 1, :3] / 255.0
    target = np.array(to_rgb(colour))
    distance = np.linalg.norm(window - target, axis=-1).min()
    return bool(distance < max(0.5 * np.linalg.norm(np.ones(3) - target), 0.1))  # nearer the colour than white


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


# --- what the figures draw -----------------------------------------------------------------------------

def test_loss_figure_draws_each_runs_losses(history: History) -> None:
    other = History(loss=[1.5] * 120)
    fig = plot.loss_figure({"book": history, "flat": other.to_dict()})
    ax = fig.axes[0]
    book, flat = ax.lines
    np.testing.assert_array_equal(book.get_xydata(), np.column_stack([np.arange(300), history.loss]))
    np.testing.assert_array_equal(flat.get_xydata(), np.column_stack([np.arange(120), other.loss]))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["book", "flat"]
    assert to_rgb(book.get_color()) != to_rgb(flat.get_color())
    pixels = rendered(fig)
    for i in (0, 40, 150, 299):
        assert drawn_at(fig, ax, (i, history.loss[i]), book.get_color(), pixels), i
        away = history.loss[i] + (0.6 if i > 100 else -0.6)  # above the curve's tail, below its start
        assert not drawn_at(fig, ax, (i, away), book.get_color(), pixels), i
    assert drawn_at(fig, ax, (60, 1.5), flat.get_color(), pixels)
    assert not drawn_at(fig, ax, (200, 1.5), flat.get_color(), pixels)  # the flat run stops at iteration 119
    assert np.array_equal(png_pixels(plot.loss_curves({"book": history, "flat": other.to_dict()})), pixels)


def test_a_diverged_loss_is_drawn_with_gaps() -> None:
    fig = plot.loss_figure({"": History(loss=[2.3, 1.0, float("inf"), float("nan"), 0.5])})
    (line,) = fig.axes[0].lines
    np.testing.assert_array_equal(line.get_ydata(), [2.3, 1.0, np.nan, np.nan, 0.5])
    assert fig.axes[0].get_legend() is None  # one unnamed run: no legend


def test_accuracy_figure_draws_train_solid_and_test_dashed(history: History) -> None:
    fig = plot.accuracy_figure({"": history})
    ax = fig.axes[0]
    train, test = ax.lines
    np.testing.assert_array_equal(train.get_xydata(), [[0, 0.1], [1, 0.8], [2, 0.9]])
    np.testing.assert_array_equal(test.get_xydata(), [[0, 0.1], [1, 0.78], [2, 0.88]])
    assert (train.get_linestyle(), test.get_linestyle()) == ("-", "--")
    assert (train.get_marker(), test.get_marker()) == ("o", "s")
    assert ax.get_ylim() == (0.0, 1.0) and ax.get_xlabel() == "epochs"
    pixels = rendered(fig)
    assert drawn_at(fig, ax, (1.5, 0.85), train.get_color(), pixels)  # half way from epoch 1 to 2
    assert drawn_at(fig, ax, (1.5, 0.83), test.get_color(), pixels)
    assert not drawn_at(fig, ax, (1.5, 0.4), train.get_color(), pixels)
    assert np.array_equal(png_pixels(plot.accuracy_curves(history)), pixels)


def test_compared_runs_get_one_colour_each(history: History) -> None:
    worse = History(loss=[1.0], train_acc=[0.1, 0.5, 0.6], test_acc=[0.1, 0.4, 0.5])
    fig = plot.accuracy_figure({"a": history, "b": worse})
    a_train, a_test, b_train, b_test = fig.axes[0].lines
    assert to_rgb(a_train.get_color()) == to_rgb(a_test.get_color()) != to_rgb(b_train.get_color())
    assert to_rgb(b_train.get_color()) == to_rgb(b_test.get_color())
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "a train acc", "a test acc", "b train acc", "b test acc"]
    np.testing.assert_array_equal(b_test.get_ydata(), worse.test_acc)


def test_gradient_descent_figure_draws_the_path() -> None:
    """On x0^2 + x1^2 each step multiplies x by 1 - 2 lr = 0.8: the points are 0.8^k (-3, 4)."""
    fig = plot.gradient_descent_figure(init_x=(-3.0, 4.0), lr=0.1, step_num=20)
    ax = fig.axes[0]
    path = next(line for line in ax.lines if line.get_marker() == "o")
    np.testing.assert_allclose(path.get_xydata(), 0.8 ** np.arange(20)[:, None] * [-3.0, 4.0], rtol=1e-6)
    pixels = rendered(fig)
    assert drawn_at(fig, ax, (-3.0, 4.0), path.get_color(), pixels)
    assert not drawn_at(fig, ax, (3.0, -4.0), path.get_color(), pixels)


def test_tangent_figure_draws_the_tangent_at_5() -> None:
    """f(x) = 0.01x^2 + 0.1x has f(5) = 0.75 and f'(5) = 0.2 (numerical_diff: within 1e-12)."""
    fig = plot.tangent_figure()
    f, tangent = fig.axes[0].lines
    x = f.get_xdata()
    np.testing.assert_allclose(f.get_ydata(), 0.01 * x**2 + 0.1 * x, rtol=1e-15)
    np.testing.assert_allclose(tangent.get_ydata(), 0.2 * (x - 5.0) + 0.75, rtol=0, atol=1e-10)
    assert "slope 0.2000" in tangent.get_label()


def test_gradient_field_figure_draws_the_negative_gradient() -> None:
    fig = plot.gradient_field_figure()
    (arrows,) = fig.axes[0].collections
    X, Y = arrows.X, arrows.Y
    np.testing.assert_allclose(arrows.U, -2 * X, atol=1e-6)
    np.testing.assert_allclose(arrows.V, -2 * Y, atol=1e-6)


def test_surface_figure_is_the_bowl() -> None:
    fig = plot.surface_figure()
    ax = fig.axes[0]
    assert ax.name == "3d" and len(ax.collections) == 1
    low, high = ax.get_zlim()
    assert low <= 0 and 18 <= high < 20  # x0^2 + x1^2 on [-3, 3]^2 reaches 18


def test_first_layer_weights_red_positive_blue_negative() -> None:
    """Unit 0 looks for ink in the top half and against it in the bottom half; unit 1 is all zero."""
    W1 = np.zeros((784, 2))
    W1[: 14 * 28, 0], W1[14 * 28:, 0] = 0.3, -0.1  # each unit is scaled to its own largest |w|
    fig = plot.first_layer_weights_figure(W1)
    unit0, unit1 = fig.axes[:2]
    pixels = rendered(fig)
    assert drawn_at(fig, unit0, (14, 5), (1.0, 0.0, 0.0), pixels, radius=0)  # +max: pure red
    assert drawn_at(fig, unit0, (14, 22), (0.67, 0.67, 1.0), pixels, radius=0)  # -max/3: light blue
    assert not drawn_at(fig, unit0, (14, 22), (1.0, 0.0, 0.0), pixels, radius=0)
    assert drawn_at(fig, unit1, (14, 14), (1.0, 1.0, 1.0), pixels, radius=0)  # zero: white
    np.testing.assert_array_equal(unit0.images[0].get_array(), W1[:, 0].reshape(28, 28))
    assert np.array_equal(png_pixels(plot.first_layer_weights(W1)), pixels)


def test_digit_grid_draws_black_ink_on_white_with_labels() -> None:
    images = np.zeros((3, 28, 28))
    images[1, 10:18, 12:16] = 1.0  # a bar of ink in the middle of the second digit
    fig = plot.digit_grid_figure(images, labels=[7, 2, 1], ncols=3)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["7", "2", "1"]
    pixels = rendered(fig)
    assert drawn_at(fig, axes[1], (13.5, 14), (0.0, 0.0, 0.0), pixels, radius=0)
    assert drawn_at(fig, axes[1], (4, 4), (1.0, 1.0, 1.0), pixels, radius=0)
    assert drawn_at(fig, axes[0], (13.5, 14), (1.0, 1.0, 1.0), pixels, radius=0)


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
