"""Benchmark of the numerical-gradient engine (issue 3).

Mode `gradient` (default): per-iteration gradient time on 784-50-10, batch 100, real MNIST batches,
for numerical-reference, numerical (1 and N processes) and backprop, measured side by side in one run;
prints medians, the ratios reference/numerical and numerical/backprop, and peak memory.

Mode `train`: the book's full numerical run (10,000 iterations by default); prints wall time, final
accuracies and memory at iteration 1,000 and at the end.

    python bench/engine.py [--data-dir DIR] [--workers 2] [--ref-iters 3]
    python bench/engine.py train [--iters 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from zdl.datasets import load_mnist
from zdl.engine import gradient
from zdl.engine.parallel import ProcessPoolGradient
from zdl.engine.threads import single_threaded_blas
from zdl.nets import TwoLayerNet
from zdl.train import Progress, TrainConfig, Trainer

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-small"


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def rss_mb() -> float:
    """Current resident memory of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_data(data_dir: Path | None):
    """Real MNIST (mnist-small where present), else MNIST-like synthetic images with ~19% non-zero pixels."""
    directory = data_dir or (DEFAULT_DATA if DEFAULT_DATA.exists() else None)
    if directory is not None or os.environ.get("ZDL_DATA_DIR"):
        data = load_mnist(data_dir=directory)
        return data, f"MNIST from {directory or os.environ['ZDL_DATA_DIR']}"
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:
        pixels = rng.integers(1, 256, (n, 784)) / 255.0
        return np.where(rng.random((n, 784)) < 0.19, pixels, 0.0).astype(np.float32)

    data = (images(5000), rng.integers(0, 10, 5000)), (images(1000), rng.integers(0, 10, 1000))
    return data, "synthetic MNIST-like images (19% non-zero pixels)"


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def bench_gradient(args: argparse.Namespace) -> None:
    (x_train, t_train), _ = data = load_data(args.data_dir)[0]
    out(f"data: {load_data(args.data_dir)[1]}")
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(x_train), 100) for _ in range(args.repeats + 1)]
    net = TwoLayerNet(784, 50, 10, seed=0)
    cycle = iter(range(10**9))

    def batch():
        mask = batches[next(cycle) % len(batches)]
        return x_train[mask], t_train[mask]

    rows = []
    t_ref = median_seconds(lambda: gradient(net.params, *batch(), "numerical-reference"), args.ref_iters)
    rows.append(("numerical-reference, 1 process", t_ref))
    t_num = median_seconds(lambda: gradient(net.params, *batch(), "numerical"), args.repeats)
    rows.append(("numerical, 1 process", t_num))
    t_pool = None
    if args.workers > 1:
        with ProcessPoolGradient((784, 50, 10), args.workers) as pool:
            t_pool = median_seconds(lambda: pool(net.params, *batch()), args.repeats)
        rows.append((f"numerical, {args.workers} processes", t_pool))
    t_bp = median_seconds(lambda: gradient(net.params, *batch(), "backprop"), args.repeats)
    rows.append(("backprop, 1 process", t_bp))

    out(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    out("784-50-10, batch 100, per-iteration gradient time (median)")
    out(f"| {'method':<32} | {'ms / iteration':>14} |")
    out(f"|{'-' * 34}|{'-' * 16}:|")
    for name, seconds in rows:
        out(f"| {name:<32} | {1000 * seconds:>14.2f} |")
    out(f"reference / numerical (1 process): {t_ref / t_num:.0f}x")
    if t_pool is not None:
        out(f"numerical 1 process / {args.workers} processes: {t_num / t_pool:.2f}x")
    out(f"numerical / backprop: {t_num / t_bp:.1f}x")
    out(f"peak memory of this process: {peak_mb():.0f} MB")
    del data


def bench_train(args: argparse.Namespace) -> None:
    data, description = load_data(args.data_dir)
    out(f"data: {description}; {args.iters} iterations, numerical, {args.workers} process(es)")
    config = TrainConfig(iters=args.iters, gradient="numerical")
    memory: dict[int, float] = {}

    def record(progress: Progress) -> None:
        if progress.iteration in (1, 1000, args.iters) or progress.iteration % 1000 == 0:
            memory[progress.iteration] = rss_mb()

    pool = ProcessPoolGradient((784, 50, 10), args.workers) if args.workers > 1 else None
    began = time.perf_counter()
    try:
        # As `zdl train --workers N` does: idle BLAS threads here would steal the workers' cores.
        with single_threaded_blas() if pool is not None else contextlib.nullcontext():
            history = Trainer(data, config, pool).run(record)
    finally:
        if pool is not None:
            pool.close()
    wall = time.perf_counter() - began
    out(f"wall time: {wall:.1f} s ({1000 * wall / args.iters:.2f} ms / iteration)")
    out(f"final train acc {history.train_acc[-1]:.4f}, test acc {history.test_acc[-1]:.4f}")
    out("memory (RSS, MB) at iteration: " + ", ".join(f"{i}: {m:.0f}" for i, m in sorted(memory.items())))
    out(f"peak memory of the main process: {peak_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=["gradient", "train"], default="gradient")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=21, help="timed iterations per fast method")
    parser.add_argument("--ref-iters", type=int, default=3, help="timed iterations of numerical-reference")
    parser.add_argument("--iters", type=int, default=10000, help="train mode: iterations")
    args = parser.parse_args()
    bench_gradient(args) if args.mode == "gradient" else bench_train(args)


if __name__ == "__main__":
    main()
