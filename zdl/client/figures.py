"""Training curves as matplotlib figures, for a notebook: one run's, or a sweep's runs overlaid.

A figure is made with pyplot and detached from it at once (`plt.close`): returned as a cell's value it is
shown inline once (Jupyter's inline backend), and it stays out of pyplot's list of open figures. Outside
a notebook, `fig.savefig(path)` writes it. A diverged run's non-finite losses are gaps in its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from zdl.history import History


def training_figure(histories: Mapping[str, History], *, best: str | None = None, title: str = "") -> Any:
    """Loss per iteration (left) and train/test accuracy per evaluation (right, test dashed), one colour per
    run; the run named `best` is drawn thick, the others thin."""
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    plt.close(fig)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, history) in enumerate(histories.items()):
        color = colors[i % len(colors)]
        width = 2.6 if label == best else (0.9 if best is not None else 1.2)
        name = f"{label} (best)" if label == best else label
        loss = np.array([np.nan if v is None else v for v in history.loss], dtype=np.float64)
        loss[~np.isfinite(loss)] = np.nan
        loss_ax.plot(np.arange(1, len(loss) + 1), loss, color=color, linewidth=width, label=name or None)
        acc_ax.plot(history.epoch_iters, history.train_acc, color=color, linewidth=width, marker="o", markersize=3,
                    label=name or None)
        acc_ax.plot(history.epoch_iters, history.test_acc, color=color, linewidth=width, linestyle="--",
                    marker="o", markersize=3)
    loss_ax.set(xlabel="iteration", ylabel="loss", title="mini-batch loss")
    acc_ax.set(xlabel="iteration", ylabel="accuracy", ylim=(0, 1), xlim=loss_ax.get_xlim(),
               title="accuracy (train solid, test dashed)")
    if any(histories):
        loss_ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
