"""`zdl submit` and `zdl sweep`: the service from the command line, a thin layer over `zdl.client`.

`zdl submit` takes `zdl train`'s flags, so a local run and a service run are the same command line; it
follows the job with a progress bar and writes the results as `zdl train --out` does (or, with --detach,
prints the job's id and leaves it to `zdl status` and `zdl download`). `zdl sweep` takes the same flags,
each with a comma-separated list of values, and trains every combination.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zdl.cli import UserError, add_training_arguments, positive_int, training_config, write_run
from zdl.client import logs_cli
from zdl.client.commands import add_service_arguments, say, service, table
from zdl.datasets import DATASETS
from zdl.engine import METHODS
from zdl.io import atomic_write_bytes

#: `zdl sweep`'s flags that take a list: (flag, the sweep setting, how to read one value).
SWEEP_FLAGS: list[tuple[str, str, Callable[[str], Any]]] = [
    ("--learning-rate", "learning_rate", float), ("--hidden-size", "hidden_size", positive_int),
    ("--batch-size", "batch_size", positive_int), ("--weight-init-std", "weight_init_std", float),
    ("--seed", "seed", int), ("--gradient", "gradient", lambda text: choice(text, METHODS)),
    ("--dataset", "dataset", lambda text: choice(text, DATASETS)),
]
#: Their short forms, kept as aliases (the same as `zdl train`'s).
SHORT_FLAGS = {"--learning-rate": "--lr", "--hidden-size": "--hidden"}
TABLE_COLUMNS = ("status", "final_loss", "train_acc", "test_acc", "iteration")
#: `zdl sweep`'s iterations per job: a tenth of the book's run, so that a sweep of a few jobs ends in minutes.
SWEEP_ITERS = 1000


def register(subparsers: argparse._SubParsersAction) -> None:
    """Entry point (group `zdl.commands`): adds `zdl submit` and `zdl sweep`."""
    p = subparsers.add_parser("submit", help="train on a zdl service (zdl cluster up) and download the results")
    add_service_arguments(p)
    add_training_arguments(p)
    p.add_argument("--blocks", default="auto", help="block groups per step (default auto: one per worker)")
    p.add_argument("--out", type=Path, default=None, help="write history.json, weights.npz and PNG curves here")
    p.add_argument("--detach", action="store_true", help="print the job's id and return at once (then `zdl status "
                                                         "ID`, `zdl download ID --out DIR`)")
    p.set_defaults(func=run_submit)

    s = subparsers.add_parser("sweep", help="train every combination of settings on a zdl service, compare them",
                              description="Each setting takes a comma-separated list, e.g. --learning-rate "
                                          "0.01,0.1,1,10 --hidden-size 50,100 trains 8 jobs; settings not given "
                                          "are the book's.")
    add_service_arguments(s)
    for flag, setting, convert in SWEEP_FLAGS:
        s.add_argument(flag, *[SHORT_FLAGS[flag]] if flag in SHORT_FLAGS else [], dest=setting,
                       type=comma_list(convert), default=None, metavar="V[,V...]",
                       help=f"{setting}: one value, or several to vary")
    s.add_argument("--iters", type=positive_int, default=SWEEP_ITERS,
                   help=f"iterations of every job (default {SWEEP_ITERS}: a sweep of a few jobs in minutes)")
    s.add_argument("--name", default=None, help="a label for the sweep")
    s.add_argument("--out", type=Path, default=None, help="write results.json and curves.png here")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=run_sweep)
    logs_cli.register(subparsers, add_service_arguments, service)


def run_submit(args: argparse.Namespace) -> int:
    if args.out is None and not args.detach:
        raise UserError("give --out DIR for the results, or --detach to start the job and return")
    blocks: int | str = args.blocks if args.blocks == "auto" else positive_int(args.blocks)
    with service(args) as client:
        job = client.submit(training_config(args), dataset=args.dataset, blocks=blocks)
        if args.detach:
            say(job.id)
            return 0
        say(f"job {job.id} {job.record['status']} at {client.url}/v1/jobs/{job.id}")
        try:
            job.wait(progress=not args.no_progress)
        except KeyboardInterrupt:  # the job goes on: say how to find it again
            sys.stderr.write(f"\nzdl: stopped following job {job.id}, which goes on: `zdl status {job.id[:8]}`, "
                             f"`zdl download {job.id[:8]} --out {args.out}` once it has succeeded, "
                             f"`zdl cancel {job.id[:8]}` to stop it\n")
            return 130
        for path in write_run(args.out, job.net.params, job.history):
            say(f"wrote {path}")
    latest = job.record["latest"]
    say(f"train acc {latest['train_acc']:.4f}  test acc {latest['test_acc']:.4f}  "
        f"wall time {job.record['progress']['elapsed_s']:.1f} s")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    values = {setting: getattr(args, setting) for _, setting, _ in SWEEP_FLAGS if getattr(args, setting)}
    grid = {setting: v for setting, v in values.items() if len(v) > 1}
    if not grid:
        raise UserError("give at least one setting with several values, e.g. --learning-rate 0.01,0.1,1,10")
    base = {setting: v[0] for setting, v in values.items() if len(v) == 1}
    with service(args) as client:
        sweep = client.sweep(grid, name=args.name, iters=args.iters, **base)
        say(f"sweep {sweep.id}: {sweep.record['size']} jobs at {client.url}/#/sweeps/{sweep.id}")
        rows = sweep.wait(progress=not args.no_progress).results(frame=False)
        say(table(rows, [*sweep.record["axes"], *TABLE_COLUMNS]))
        for row in rows:
            if row["error"]:
                say(f"job {row['job_id']} {row['status']}: {row['error']}")
        if args.out is not None:
            png = io.BytesIO()
            sweep.plot().savefig(png, format="png")
            for name, data in (("results.json", json.dumps(rows, indent=1).encode()), ("curves.png", png.getvalue())):
                say(f"wrote {atomic_write_bytes(args.out / name, data)}")
    return 0


def comma_list(convert: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """An argparse type: "0.01,0.1,1" -> [0.01, 0.1, 1.0], each item read by `convert`."""

    def parse(text: str) -> list[Any]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected one or more comma-separated values, got {text!r}")
        return [convert(item) for item in items]

    return parse


def choice(text: str, allowed: tuple[str, ...] | list[str]) -> str:
    if text not in allowed:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(allowed)}")
    return text
