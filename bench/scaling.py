"""The scaling model of a step, checked against measurements with network latency emulated (issue 12).

A job whose step fits one block group per worker runs as a gang (worker/gang.py): G replicas, one per
block worker, each computing 1/G of the gradient and exchanging its part with the others through the step
Redis. The model of one step on G workers, with a one-way latency d between the workers and Redis:

    T(G, d) = C / G + f + [G > 1] (x0 + G b(G) / S) + 2 d r(G)

    C     the gradient's compute on one core (measured: a gang of one's gradient time per step)
    f     the rest of a step on a replica: update, loss, per-epoch evaluation, reports (T(1, 0) - C)
    b(G)  the bytes a replica sends and receives per step: its part to each of the G - 1 others and theirs
          to it, 2 (G - 1) / G of the parameters as float64
    S     the step Redis's throughput (measured here), which relays every replica's bytes: G b(G) a step
    x0    the exchange's fixed cost (fitted: T(2, 0) - C/2 - f - 2 b(2) / S)
    r(G)  round trips a replica waits for per step: the push of its part, the blocking pop of the first part
          to arrive and one pop of the rest (G >= 2), plus replica 0's few amortized checks and reports;
          counted here as the writes per replica and step that cross the proxy

The runs' block workers reach both Redis servers through `bench/delay_proxy.py`, adding d = 0.1, 0.5 and 2
ms each way; the predictions for G = 1, 2 use only the runs at d = 0 and the model.

    python bench/scaling.py [--data-dir DIR] [--iters 300] [--delays-ms 0,0.1,0.5,2] [--gbits 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from delay_proxy import DelayProxy  # bench/, the script's own directory
from pydantic import SecretStr

from worker.cluster import LocalCluster
from worker.redis_auth import APP_USER
from worker.settings import Settings

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-small"
CONFIGS = {"book": ("mnist", 50), "heavy": ("fashion-mnist", 300)}  # 784-H-10, batch 100


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def n_params(hidden: int) -> int:
    return 784 * hidden + hidden + hidden * 10 + 10


def run(api: httpx.Client, dataset: str, hidden: int, iters: int, groups: int) -> dict[str, Any]:
    body = {"dataset": dataset, "model": {"hidden_size": hidden}, "training": {"iters": iters, "batch_size": 100},
            "gradient": {"method": "numerical", "blocks": groups}}
    job = api.post("/v1/jobs", json=body).raise_for_status().json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.2)
        job = api.get(job["links"]["self"]).raise_for_status().json()
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['status']}: {job.get('error')}")
    return job


def step_ms(job: dict[str, Any]) -> float:
    """Wall time per iteration, from the job's own clock (its history's wall time: steps only, no start-up)."""
    return 1000 * job["progress"]["elapsed_s"] / job["progress"]["total"]


def measure(args: argparse.Namespace, env: dict[str, str], delay_s: float) -> dict[Any, Any]:
    """Per config and gang size: the step time and what crossed the proxies per step."""
    key = secrets.token_urlsafe(16)
    settings = Settings(api_keys=SecretStr(key), secret_key=SecretStr(secrets.token_urlsafe(32)))
    results = {}
    with tempfile.TemporaryDirectory(prefix="zdl-scaling-") as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster", block_workers=2, port=0, settings=settings, persist=False,
                               env=env)
        proxies = [DelayProxy(port, delay_s).start() for port in (cluster.redis_port, cluster.step_redis_port)]
        password = cluster.settings.redis_url.split("@")[0].rsplit(":", 1)[1]
        cluster.block_env = {
            "ZDL_REDIS_URL": f"redis://{APP_USER}:{password}@127.0.0.1:{proxies[0].port}/0",
            "ZDL_STEP_REDIS_URL": f"redis://{APP_USER}:{password}@127.0.0.1:{proxies[1].port}/0"}
        with cluster, httpx.Client(base_url=cluster.url, timeout=60, headers={"Authorization": f"Bearer {key}"}) \
                as api:
            for name, (dataset, hidden) in CONFIGS.items():
                run(api, dataset, hidden, 20, 2)  # data loaded and kernels warm in every process
                for groups in (1, 2):
                    before = [p.counters() for p in proxies]
                    job = run(api, dataset, hidden, args.iters, groups)
                    after = [p.counters() for p in proxies]
                    pairs = list(zip(after, before, strict=True))
                    moved = sum(a.up_bytes + a.down_bytes - b.up_bytes - b.down_bytes for a, b in pairs)
                    writes = sum(a.up_writes - b.up_writes for a, b in pairs)
                    results[(name, groups)] = {"ms": step_ms(job), "kb": moved / args.iters / 1000,
                                               "writes": writes / args.iters,
                                               "compute_ms": 1000 * job["timings"]["gradient_s"] / args.iters}
            results["redis_bytes_s"] = redis_throughput(cluster.settings.step_url)
        for proxy in proxies:
            proxy.stop()
    return results


def redis_throughput(url: str, megabytes: int = 64) -> float:
    """Bytes per second the Redis at `url` relays: SET then GET of 1 MB values, as the exchange's pushes and
    pops of parts are (half of the time each way)."""
    value = os.urandom(1 << 20)
    with redis.Redis.from_url(url) as client:
        began = time.perf_counter()
        for _ in range(megabytes):
            client.set("bench:throughput", value)
            client.get("bench:throughput")
        client.delete("bench:throughput")
    return 2 * megabytes * len(value) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ZDL_DATA_DIR", DEFAULT_DATA)))
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--delays-ms", default="0,0.1,0.5,2")
    parser.add_argument("--gbits", type=float, default=10.0, help="the step Redis host's network, for G machines")
    parser.add_argument("--lan-delay-ms", type=float, default=0.1, help="one-way latency for G machines")
    args = parser.parse_args()
    delays = [float(d) / 1000 for d in args.delays_ms.split(",")]
    env = {"ZDL_DATA_DIR": str(args.data_dir), "ZDL_MNIST_MIRRORS": ""}
    out(f"zdl scaling bench: {os.cpu_count()} CPUs, Python {platform.python_version()}; {args.iters} iterations "
        f"per run; block workers reach Redis through a proxy adding d each way")
    measured = {d: measure(args, env, d) for d in delays}
    base = measured[delays[0]]
    for name, (_, hidden) in CONFIGS.items():
        b2 = 2 * 8 * n_params(hidden) / 2  # b(G) at G = 2
        compute, one, two = base[(name, 1)]["compute_ms"], base[(name, 1)]["ms"], base[(name, 2)]["ms"]
        rest = one - compute
        throughput = base["redis_bytes_s"]
        fixed = max(two - compute / 2 - rest - 1000 * 2 * b2 / throughput, 0.0)
        out(f"\n{name} (784-{hidden}-10, batch 100): C = {compute:.2f} ms, f = {rest:.2f} ms, x0 = {fixed:.2f} ms, "
            f"S = {throughput / 1e9:.2f} GB/s (step Redis, loopback)")
        out("  d (ms)   G   measured   predicted   r (writes/replica/step)   kB/step at the proxies")
        for d in delays:
            for groups in (1, 2):
                row = measured[d][(name, groups)]
                rounds = base[(name, groups)]["writes"] / groups
                predicted = base[(name, groups)]["ms"] + 2 * rounds * d * 1000
                out(f"  {1000 * d:6.1f}  {groups:2d}   {row['ms']:7.2f}     {predicted:7.2f}      {rounds:6.2f}"
                    f"                 {row['kb']:8.0f}")
        rounds = base[(name, 2)]["writes"] / 2 + 1  # one more pop, of the rest of the parts
        net = min(throughput, args.gbits * 1e9 / 8)
        out(f"  predicted on G machines (d = {args.lan_delay_ms} ms, the step Redis on a {args.gbits:g} Gbit/s host, "
            f"r = {rounds:.1f}):")
        for machines in (1, 2, 4, 8, 16):
            moved = 2 * 8 * n_params(hidden) * (machines - 1) / machines
            exchange = (fixed + 1000 * machines * moved / net) if machines > 1 else 0.0
            predicted = compute / machines + rest + exchange + 2 * rounds * args.lan_delay_ms * (machines > 1)
            out(f"    G = {machines:2d}: {predicted:7.2f} ms per step, {one / predicted:4.1f}x one worker "
                f"({moved / 1e6:.2f} MB per replica and {machines * moved / 1e6:.1f} MB through the step Redis)")


if __name__ == "__main__":
    main()
