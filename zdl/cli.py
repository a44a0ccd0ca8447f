"""The `zdl` command: `zdl train`, `zdl figures`, and commands that other packages plug in.

Service commands (`zdl cluster`, `zdl submit`) live with the service and register themselves through
the `zdl.commands` entry-point group, so this library never imports the service.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np

from zdl.datasets import DATASETS, DatasetError, dataset_shape, load_mnist
from zdl.engine import METHODS, gradient, kernel_name, warm_up
from zdl.engine.threads import single_threaded_blas
from zdl.history import History
from zdl.nets import Params
from zdl.train import Array, GradientFn, Progress, TrainConfig, Trainer
from zdl.user_errors import UserError

log = logging.getLogger("zdl")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The run's flags with the book's defaults, shared by `zdl train` and `zdl submit`: named as TrainConfig's
    fields, the REST body's and the sweeps' settings (--hidden and --lr are kept as short forms)."""
    p.add_argument("--hidden-size", "--hidden", type=positive_int, default=50, help="hidden units (default 50)")
    p.add_argument("--iters", type=positive_int, default=10000, help="iterations (default 10000)")
    p.add_argument("--batch-size", type=positive_int, default=100, help="mini-batch size (default 100)")
    p.add_argument("--learning-rate", "--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    p.add_argument("--weight-init-std", type=float, default=0.01, help="initial weight scale (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--gradient", choices=METHODS, default="numerical", help="gradient method (default numerical)")
    p.add_argument("--dataset", choices=DATASETS, default="mnist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train the book's two-layer net (defaults: the book's run)")
    add_training_arguments(p)
    p.add_argument("--workers", type=positive_int, default=1, help="local processes for numerical gradients")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help=f"threads for the numerical gradient in this process (default: the cores available, {default_threads()})",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="directory holding the four *-ubyte.gz files")
    p.add_argument("--out", type=Path, default=None, help="write history.json, weights.npz and PNG curves here")
    p.set_defaults(func=run_train)


def default_threads() -> int:
    """The cores this process may run on: threads inside one gradient call are the fastest local choice."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def training_config(args: argparse.Namespace) -> TrainConfig:
    """The run that `add_training_arguments`' flags describe."""
    return TrainConfig(
        hidden_size=args.hidden_size,
        weight_init_std=args.weight_init_std,
        iters=args.iters,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        gradient=args.gradient,
    )


def run_train(args: argparse.Namespace) -> int:
    config = training_config(args)
    (x_train, t_train), (x_test, t_test) = load_mnist(dataset=args.dataset, data_dir=args.data_dir)
    # float64 once, not at every evaluation's matrix product (the same bits: float32 -> float64 is exact)
    data = (x_train.astype(np.float64), t_train), (x_test.astype(np.float64), t_test)
    _, output_size = dataset_shape(args.dataset)
    threads = args.threads or default_threads()
    gradient_fn: GradientFn | None = None
    if config.gradient != "backprop":
        warm_up()
        gradient_fn = partial(threaded_gradient, method=config.gradient, threads=threads)
    pool = None
    if args.workers > 1 and config.gradient != "backprop":
        from zdl.engine.parallel import ProcessPoolGradient

        input_size = x_train.shape[1]
        gradient_fn = pool = ProcessPoolGradient(
            (input_size, config.hidden_size, output_size), args.workers, config.gradient, max_batch=config.batch_size
        )
        threads = 1  # each worker process computes its group on one thread
    try:
        trainer = Trainer(data, config, gradient_fn, output_size=output_size)
        # The gradient's threads (or worker processes) use the cores; OpenBLAS's threads, spinning idle after
        # each evaluation's product, would only steal their time.
        with single_threaded_blas() if gradient_fn is not None else contextlib.nullcontext():
            history = trainer.run(progress_bar(config.iters, disable=args.no_progress))
    finally:
        if pool is not None:
            pool.close()
    history.config = {**history.config, "dataset": args.dataset, "workers": args.workers, "threads": threads,
                      "kernel": kernel_name()}
    log.info(
        "final train acc %.4f, test acc %.4f, wall time %.1f s",
        history.train_acc[-1],
        history.test_acc[-1],
        history.wall_time,
    )
    sys.stdout.write(
        f"train acc {history.train_acc[-1]:.4f}  test acc {history.test_acc[-1]:.4f}  "
        f"wall time {history.wall_time:.1f} s\n"
    )
    if args.out is not None:
        for path in write_run(args.out, trainer.net.params, history):
            sys.stdout.write(f"wrote {path}\n")
    return 0


def threaded_gradient(params: Params, x: Array, t: Array, *, method: str, threads: int) -> Params:
    """The engine's gradient in this process on `threads` threads (the bits do not depend on them)."""
    return gradient(params, x, t, method, threads=threads)


def write_run(out_dir: Path, params: Params, history: History) -> list[Path]:
    """history.json, weights.npz, loss.png and accuracy.png in out_dir, each written atomically."""
    from zdl.io import atomic_write_bytes, save_weights
    from zdl.plot import write_training_plots

    paths = [
        atomic_write_bytes(out_dir / "history.json", history.to_json().encode()),
        save_weights(params, out_dir / "weights.npz"),
    ]
    return paths + write_training_plots(history, out_dir)


def progress_bar(total: int, disable: bool = False) -> Callable[[Progress], None]:
    """A tqdm callback showing loss, iterations/s and ETA; the bar closes itself at the end."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="it", disable=disable, dynamic_ncols=True)

    def update(progress: Progress) -> None:
        bar.update(1)
        if progress.test_acc is not None:
            bar.set_postfix(loss=f"{progress.loss:.4f}", test_acc=f"{progress.test_acc:.4f}", refresh=False)
        elif progress.iteration % 10 == 0:
            bar.set_postfix(loss=f"{progress.loss:.4f}", refresh=False)
        if progress.iteration == progress.total:
            bar.close()

    return update


def add_figures_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("figures", help="write the chapter's figures as PNG files")
    p.add_argument("out", type=Path, help="output directory")
    p.set_defaults(func=run_figures)


def run_figures(args: argparse.Namespace) -> int:
    from zdl.plot import write_figures

    for path in write_figures(args.out):
        sys.stdout.write(f"wrote {path}\n")
    return 0


DESCRIPTION = """\
The two-layer network of "Deep Learning from Scratch" (ゼロから作るDeep Learning), chapter 4: its mini-batch
training loop (4.5) with numerical gradients (4.4), here on this machine or on a training service you run.

on this machine:
  zdl train --iters 1000              train the book's 784-50-10 network (its defaults: the book's run)
  zdl figures out/                    the chapter's figures as PNG files

on a training service (Redis, Celery workers and an API, all on this machine):
  zdl cluster up --detach             start it; the URL and key are saved where the commands below find them
  zdl submit --iters 1000 --out run/  train there, follow it, write history, weights and curves to run/
  zdl submit --detach                 ... or just start the job and print its id
  zdl jobs                            your jobs; then zdl status ID, zdl cancel ID, zdl download ID --out DIR
  zdl sweep --learning-rate 0.01,0.1,1  one job per setting, compared in a table
  zdl cluster status / zdl cluster down   is it running? / stop every process it started

The settings have the book's names: --hidden-size, --learning-rate, --batch-size, --iters, --weight-init-std.
`zdl COMMAND --help` describes each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zdl", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_train_parser(subparsers)
    add_figures_parser(subparsers)
    for entry in entry_points(group="zdl.commands"):
        entry.load()(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, DatasetError, OSError) as exc:  # expected: one line, no traceback
        sys.stderr.write(f"zdl: error: {one_line(exc)}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("zdl: interrupted\n")
        return 130


def one_line(exc: BaseException) -> str:
    """An error's message on one line (a pydantic ValidationError spans several)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
