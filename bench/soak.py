"""Soak run of the service: mixed load from 20 keys for N minutes with faults, watching for anything that grows.

On a local cluster (3 Redis servers, a coordinator worker, 2 block workers, the API): jobs submitted from 20 keys
(one from each at once at the start, as a class does, then one every `--submit-every` seconds; numerical,
backprop and a few numerical-reference steps), polled, their event streams opened and dropped, small
sweeps, cancels, and finished work deleted, as users do. Every `--fault-every` minutes one fault in turn:
SIGKILL a block worker, SIGKILL the coordinator worker (its pool too), restart the step Redis (it comes back
empty); the dead process is then replaced. At each interval it prints every process's resident memory (its
peak over the interval) and open descriptors, each Redis's used_memory and connected_clients, and the 5xx
answers; at the end the whole table, the 5xx total, the jobs lost (submitted, not seen to end, and neither
queued nor running now), a verdict per series (flat: its peak after warm-up no higher than its peak during
warm-up, within a tolerance that bench/soak_gauges.py sets and explains; a restarted process's series from
its own start, its first minutes its warm-up; the block worker killed is always blocks1, so blocks2's series
runs whole), and one line that sums up the run.

    python bench/soak.py [--minutes 60] [--interval 60] [--fault-every 4] [--warmup 10] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import faults  # bench/faults.py, the script's own directory
from pydantic import SecretStr
from soak_gauges import FLAT_FLOOR, Gauges, Sample, table, trend
from soak_load import Load

from worker.cluster.launcher import LocalCluster
from worker.settings import Settings
from zdl.engine import warm_up

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-small"
KEYS = 20


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fault(cluster: LocalCluster, n: int) -> str:
    """The n-th fault of the rotation, done; the cluster back at strength when it returns."""
    kind = n % 3
    if kind == 0:
        what = f"SIGKILL block worker {faults.kill_block_worker(cluster)}"
    elif kind == 1:
        assert cluster.coordinator is not None
        faults.sigkill_group(cluster.coordinator)
        what = f"SIGKILL coordinator worker {cluster.coordinator.name}"
    else:
        down = faults.redis_outage(cluster, 1.0, step=True)
        what = f"restart the step Redis ({down:.1f} s down)"
    cluster.replace_dead()
    return what


def report_interval(sample: Sample, load: Load) -> None:
    counts = load.take_interval()
    sample.values["http 5xx"] = float(counts["5xx"])
    out(f"-- {sample.minute:.1f} min: {counts['requests']} requests, 5xx {counts['5xx']}, "
        f"errors {counts['errors']}, submitted {load.submitted()}, ended {load.ended()}")
    processes = sorted({n.split(" ")[0] for n in sample.values if n.endswith("peak_rss_mb")})
    out("   peak RSS MB / fds: " + ", ".join(
        f"{p} {sample.values[f'{p} peak_rss_mb']:.0f}/{sample.values[f'{p} fds']:.0f}" for p in processes))
    servers = sorted({n.split(" ")[0] for n in sample.values if n.endswith("used_mb")})
    out("   Redis used MB / clients: " + ", ".join(
        f"{r} {sample.values[f'{r} used_mb']:.1f}/{sample.values[f'{r} clients']:.0f}" for r in servers))


def report_end(samples: list[Sample], load: Load, warmup_min: float) -> None:
    out()
    out("\n".join(table(samples)))
    lost, in_flight = load.audit()
    out()
    out(f"5xx total: {load.total_5xx}; transport errors: {load.total_errors}; jobs submitted {load.submitted()}, "
        f"ended {load.ended()}, still queued or running {len(in_flight)}, lost {len(lost)}"
        + (f": {', '.join(lost[:10])}" if lost else ""))
    out()
    out(f"| series | peak in warm-up ({warmup_min:g} min) | peak after | rise | slope after, per min | verdict |")
    out("|---|---:|---:|---:|---:|---|")
    names = sorted({n for s in samples for n in s.values if n.rsplit(" ", 1)[1] in FLAT_FLOOR})
    growing, unjudged = [], []
    for name in names:
        t = trend(name, samples, warmup_min)
        if t is None:
            unjudged.append(name)
            out(f"| {name} | - | - | - | - | too few samples after warm-up (restarted late) |")
            continue
        if not t.flat:
            growing.append(name)
        out(f"| {name} | {t.warmup_peak:.1f} | {t.later_peak:.1f} | {t.rise:+.1f} | {t.slope_per_min:+.3f} | "
            f"{'flat' if t.flat else 'GROWS'} |")
    out()
    ok = not growing and not load.total_5xx and not lost
    out(f"verdict: {'PASS' if ok else 'FAIL'}: {len(names) - len(growing) - len(unjudged)} series flat after warm-up"
        + (f", {len(growing)} growing ({', '.join(growing)})" if growing else "")
        + (f", {len(unjudged)} not judged (restarted late)" if unjudged else "")
        + f"; {load.total_5xx} 5xx; {len(lost)} of {load.submitted()} jobs lost")


def soak(cluster: LocalCluster, keys: list[str], args: argparse.Namespace) -> None:
    load = Load(cluster.url, keys, submit_every_s=args.submit_every)
    gauges = Gauges(cluster)
    stop = threading.Event()
    load.class_starts()
    threads = load.threads(stop)
    for thread in threads:
        thread.start()
    began = time.monotonic()
    samples = [gauges.read(0.0)]
    report_interval(samples[-1], load)
    next_sample, next_fault, n_faults = args.interval, args.fault_every * 60, 0
    try:
        while (elapsed := time.monotonic() - began) < args.minutes * 60:
            if elapsed >= next_sample:  # before a fault due at the same time: not a process just restarted
                samples.append(gauges.read(elapsed / 60))
                report_interval(samples[-1], load)
                while next_sample <= elapsed:  # one sample, however long a fault held the loop
                    next_sample += args.interval
            if elapsed >= next_fault:
                out(f"** {elapsed / 60:.1f} min: {fault(cluster, n_faults)}")
                n_faults, next_fault = n_faults + 1, next_fault + args.fault_every * 60
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    samples.append(gauges.read((time.monotonic() - began) / 60))
    report_interval(samples[-1], load)
    report_end(samples, load, args.warmup)
    gauges.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the load runs (default 60)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples (default 60)")
    parser.add_argument("--fault-every", type=float, default=4.0, help="minutes between faults (default 4)")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="minutes of warm-up, whose peak later samples are judged against (default 10)")
    parser.add_argument("--submit-every", type=float, default=4.0, help="seconds between submissions (default 4)")
    parser.add_argument("--data-dir", type=Path, default=None, help="MNIST files (default: shared mnist-small)")
    args = parser.parse_args()
    source = args.data_dir or (DEFAULT_DATA if DEFAULT_DATA.exists() else None)
    if source is None:
        parser.error("no data: pass --data-dir (a directory with the four MNIST files)")
    keys = [secrets.token_urlsafe(16) for _ in range(KEYS)]
    settings = Settings(api_keys=SecretStr(",".join(keys)), secret_key=SecretStr(secrets.token_urlsafe(32)),
                        heartbeat_interval_s=0.5, heartbeat_ttl_s=2.0, block_poll_s=0.25, checkpoint_every=20)
    out(f"zdl soak run: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; {args.minutes:g} min, "
        f"{KEYS} keys, a submission every {args.submit_every:g} s, a fault every {args.fault_every:g} min, "
        f"samples every {args.interval:g} s, warm-up {args.warmup:g} min")
    with tempfile.TemporaryDirectory(prefix="zdl-soak-") as tmp:
        env = {"ZDL_DATA_DIR": str(source.parent), "ZDL_CACHE_DIR": str(Path(tmp) / "cache"), "ZDL_MNIST_MIRRORS": ""}
        if source.name != "mnist":
            (Path(tmp) / "data").mkdir()
            (Path(tmp) / "data" / "mnist").symlink_to(source.resolve())
            env["ZDL_DATA_DIR"] = str(Path(tmp) / "data")
        out(f"kernels compiled (or read from Numba's cache) in {warm_up():.1f} s, before the workers start")
        cluster = LocalCluster(Path(tmp) / "cluster", block_workers=2, port=0, settings=settings, persist=True,
                               env=env)
        cluster.start(timeout_s=300)  # a loaded machine's workers may be slow to report
        try:
            soak(cluster, keys, args)
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
