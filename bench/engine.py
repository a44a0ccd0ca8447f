"""Benchmark of the numerical-gradient engine (issue 3).

Mode `gradient` (default): per-iteration gradient time on 784-50-10, batch 100, real MNIST batches,
for numerical-reference, numerical (numba and numpy kernels, 1 and 2 threads, N processes) and
backprop, measured side by side in one run; then numerical (numba) and backprop on hidden 100/300,
batch 1000, and Fashion-MNIST 784-50-10 and 784-300-10; prints medians, ratios and peak memory.

Mode `compare` (issue 23): the closed form, the evaluated kernel and backprop side by side on one core,
interleaved step by step, on the book's config (784-50-10, batch 100), Fashion-MNIST 784-300-10 batch
100 and MNIST 784-1,024-10 batch 1,000; prints medians of thread time and the ratios to backprop.

Mode `train-compare`: the book's full run with `zdl train` three times (numerical on the closed form,
numerical on the evaluated kernel, backprop), on the cores this process may use; prints wall times,
test accuracies and how far the closed form's final weights are from the evaluated kernel's.

Mode `compile`: the kernels' compile time cold (empty cache) and cached, each in a fresh process.

Mode `train`: the book's full numerical run (10,000 iterations by default); prints wall time, final
accuracies and memory at iteration 1,000 and at the end.

    python bench/engine.py [--data-dir DIR] [--workers 2] [--ref-iters 3]
    python bench/engine.py train [--iters 10000] [--workers 2 | --threads 2]
    python bench/engine.py compile
    python bench/engine.py compare [--repeats 21]
    python bench/engine.py train-compare [--iters 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from zdl.datasets import load_mnist
from zdl.engine import gradient, kernel_name, warm_up
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
    warm_up()
    t_ref = median_seconds(lambda: gradient(net.params, *batch(), "numerical-reference"), args.ref_iters)
    rows.append(("numerical-reference, 1 process", t_ref))
    t_closed = median_seconds(lambda: gradient(net.params, *batch(), "numerical", kernel="closed-form"), args.repeats)
    rows.append(("numerical (closed form), 1 thread", t_closed))
    t_num = median_seconds(lambda: gradient(net.params, *batch(), "numerical", kernel="numba"), args.repeats)
    rows.append(("numerical (numba), 1 thread", t_num))
    t_threads = median_seconds(lambda: gradient(net.params, *batch(), threads=2, kernel="numba"), args.repeats)
    rows.append(("numerical (numba), 2 threads", t_threads))
    t_numpy = median_seconds(lambda: gradient(net.params, *batch(), "numerical", kernel="numpy"), args.repeats)
    rows.append(("numerical (numpy), 1 thread", t_numpy))
    t_pool = None
    if args.workers > 1:
        with ProcessPoolGradient((784, 50, 10), args.workers) as pool:
            t_pool = median_seconds(lambda: pool(net.params, *batch()), args.repeats)
        rows.append((f"numerical (numba), {args.workers} processes", t_pool))
    t_bp = median_seconds(lambda: gradient(net.params, *batch(), "backprop"), args.repeats)
    rows.append(("backprop, 1 process", t_bp))

    out(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    out("784-50-10, batch 100, per-iteration gradient time (median)")
    out(f"| {'method':<32} | {'ms / iteration':>14} |")
    out(f"|{'-' * 34}|{'-' * 16}:|")
    for name, seconds in rows:
        out(f"| {name:<32} | {1000 * seconds:>14.2f} |")
    out(f"reference / numerical (numba, 1 thread): {t_ref / t_num:.0f}x; numpy kernel / numba: {t_numpy / t_num:.1f}x")
    out(f"numerical 1 thread / 2 threads: {t_num / t_threads:.2f}x")
    if t_pool is not None:
        out(f"numerical 1 thread / {args.workers} processes: {t_num / t_pool:.2f}x")
    out(f"numerical / backprop: {t_num / t_bp:.1f}x")
    bench_shapes(args, data)
    out(f"peak memory of this process: {peak_mb():.0f} MB")
    del data


def bench_shapes(args: argparse.Namespace, mnist) -> None:
    """numerical (numba, 1 and 2 threads) and backprop on larger shapes and on Fashion-MNIST."""
    try:
        fashion = load_mnist(dataset="fashion-mnist")
    except Exception as exc:  # Fashion-MNIST absent: say so, measure the rest
        out(f"Fashion-MNIST not found ({exc}); its rows are left out")
        fashion = None
    out(f"| {'data, shape, batch':<28} | {'numerical 1 thr':>15} | {'2 threads':>10} | {'backprop':>9} | ms |")
    out(f"|{'-' * 30}|{'-' * 16}:|{'-' * 11}:|{'-' * 10}:|----|")
    cases = [("mnist", mnist, 100, 1000), ("mnist", mnist, 300, 1000), ("fashion", fashion, 50, 100),
             ("fashion", fashion, 300, 100)]
    rng = np.random.default_rng(1)
    for name, data, hidden, size in cases:
        if data is None:
            continue
        (x_train, t_train), _ = data
        mask = rng.choice(len(x_train), size)
        x, t = x_train[mask].astype(np.float64), t_train[mask]
        params = TwoLayerNet(784, hidden, 10, seed=0).params
        one = median_seconds(lambda p=params, x=x, t=t: gradient(p, x, t, threads=1), max(3, args.repeats // 3))
        two = median_seconds(lambda p=params, x=x, t=t: gradient(p, x, t, threads=2), max(3, args.repeats // 3))
        bp = median_seconds(lambda p=params, x=x, t=t: gradient(p, x, t, "backprop"), max(3, args.repeats // 3))
        label = f"{name} 784-{hidden}-10, {size}"
        out(f"| {label:<28} | {1000 * one:>15.2f} | {1000 * two:>10.2f} | {1000 * bp:>9.2f} |    |")


COMPARE_CASES = [("mnist", 50, 100, "book's config"), ("fashion-mnist", 300, 100, "Fashion-MNIST"),
                 ("mnist", 1024, 1000, "MNIST, hidden 1,024")]


def bench_compare(args: argparse.Namespace) -> None:
    """Thread time per step, one core: closed form, evaluated kernel and backprop interleaved, so that
    whatever else the machine runs weighs on all three alike."""
    out(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    warm_up("closed-form")
    out(f"| {'case':<40} | {'closed form':>11} | {'evaluated':>9} | {'backprop':>8} | {'closed/bp':>9} | "
        f"{'eval/bp':>7} |")
    out(f"|{'-' * 42}|{'-' * 12}:|{'-' * 10}:|{'-' * 9}:|{'-' * 10}:|{'-' * 8}:|")
    rng = np.random.default_rng(2)
    for dataset, hidden, batch, label in COMPARE_CASES:
        (x_train, t_train), _ = load_mnist(dataset=dataset, data_dir=args.data_dir if dataset == "mnist" else None)
        mask = rng.choice(len(x_train), batch)
        x, t = x_train[mask].astype(np.float64), t_train[mask]
        params = TwoLayerNet(784, hidden, 10, seed=0).params
        routes = (("closed", "numerical", "closed-form"), ("evaluated", "numerical", "numba"),
                  ("backprop", "backprop", None))
        calls = {name: partial(gradient, params, x, t, method, kernel=kernel) for name, method, kernel in routes}
        repeats = args.repeats if hidden * batch < 500_000 else max(5, args.repeats // 4)
        times: dict[str, list[float]] = {name: [] for name in calls}
        for call in calls.values():
            call()  # caches warm
        for _ in range(repeats):
            for name, call in calls.items():
                began = time.thread_time()
                call()
                times[name].append(time.thread_time() - began)
        closed, evaluated, backprop = (statistics.median(times[k]) for k in calls)
        case = f"{label}: 784-{hidden}-10, batch {batch}"
        out(f"| {case:<40} | {1000 * closed:>8.2f} ms | {1000 * evaluated:>6.2f} ms | {1000 * backprop:>5.2f} ms | "
            f"{closed / backprop:>8.2f}x | {evaluated / backprop:>6.2f}x |")
    out(f"load average at the end: {os.getloadavg()[0]:.1f}")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def bench_train_compare(args: argparse.Namespace) -> None:
    """`zdl train` (the book's run) with numerical on both kernels and with backprop, one after another."""
    import subprocess
    import tempfile

    out(f"machine: {cpu_model()}, {len(os.sched_getaffinity(0))} cores for the run, "
        f"load average {os.getloadavg()[0]:.1f} at the start; {args.iters} iterations")
    runs = [("numerical, closed form", "numerical", "closed-form"), ("numerical, evaluated kernel", "numerical",
                                                                    "numba"), ("backprop", "backprop", "auto")]
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for label, method, kernel in runs:
            out_dir = Path(folder) / kernel
            env = {**os.environ, "ZDL_KERNEL": kernel}
            if args.data_dir is not None:
                env["ZDL_DATA_DIR"] = str(args.data_dir)
            command = [sys.executable, "-m", "zdl.cli", "train", "--iters", str(args.iters), "--gradient", method,
                       "--no-progress", "--out", str(out_dir)]
            began = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            wall = time.perf_counter() - began
            history = json.loads((out_dir / "history.json").read_text())
            with np.load(out_dir / "weights.npz") as weights:
                results[kernel] = {name: weights[name] for name in weights.files}
            out(f"| {label:<28} | {wall:>7.1f} s | test acc {history['test_acc'][-1]:.4f} | "
                f"load {os.getloadavg()[0]:.1f} |")
            results[label] = wall
    gaps = {name: float(np.abs(results["closed-form"][name] - results["numba"][name]).max())
            for name in results["numba"]}
    out(f"closed form / backprop: {results['numerical, closed form'] / results['backprop']:.2f}x; "
        f"evaluated / backprop: {results['numerical, evaluated kernel'] / results['backprop']:.2f}x")
    out("final weights, closed form vs evaluated kernel, max |difference|: "
        + ", ".join(f"{name} {gap:.1e}" for name, gap in gaps.items()))


COMPILE = "import time, zdl.engine; print(zdl.engine.warm_up('numba'))"


def bench_compile(args: argparse.Namespace) -> None:
    """warm_up() in fresh processes: with an empty cache (NUMBA_CACHE_DIR a new folder), then cached."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        cold = float(subprocess.run([sys.executable, "-c", COMPILE], env=env, capture_output=True, text=True,
                                    check=True).stdout)
        cached = [float(subprocess.run([sys.executable, "-c", COMPILE], env=env, capture_output=True, text=True,
                                       check=True).stdout) for _ in range(3)]
    out(f"kernel compile: cold {cold:.2f} s, cached {statistics.median(cached):.3f} s (median of 3)")


def bench_train(args: argparse.Namespace) -> None:
    data, description = load_data(args.data_dir)
    out(f"data: {description}; {args.iters} iterations, numerical ({kernel_name()}), "
        + (f"{args.workers} processes" if args.workers > 1 else f"{args.threads} thread(s)"))
    config = TrainConfig(iters=args.iters, gradient="numerical")
    memory: dict[int, float] = {}

    def record(progress: Progress) -> None:
        if progress.iteration in (1, 1000, args.iters) or progress.iteration % 1000 == 0:
            memory[progress.iteration] = rss_mb()

    (x_train, t_train), (x_test, t_test) = data
    data = (x_train.astype(np.float64), t_train), (x_test.astype(np.float64), t_test)  # as `zdl train` does
    warm_up()
    pool = ProcessPoolGradient((784, 50, 10), args.workers) if args.workers > 1 else None
    threads = args.threads

    def threaded(params, x, t):
        return gradient(params, x, t, threads=threads)

    began = time.perf_counter()
    try:
        # As `zdl train` does: idle BLAS threads here would steal the gradient's cores.
        with single_threaded_blas():
            history = Trainer(data, config, pool or threaded).run(record)
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
    parser.add_argument("mode", nargs="?", choices=["gradient", "train", "compile", "compare", "train-compare"],
                        default="gradient")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="train mode with --workers 1: threads in process")
    parser.add_argument("--repeats", type=int, default=21, help="timed iterations per fast method")
    parser.add_argument("--ref-iters", type=int, default=3, help="timed iterations of numerical-reference")
    parser.add_argument("--iters", type=int, default=10000, help="train mode: iterations")
    args = parser.parse_args()
    modes = {"gradient": bench_gradient, "train": bench_train, "compile": bench_compile, "compare": bench_compare,
             "train-compare": bench_train_compare}
    modes[args.mode](args)


if __name__ == "__main__":
    main()
