"""The scaling model of a step, checked against measurements with network latency emulated (issue 12).

A job whose step fits one block group per worker runs as a gang (worker/gang/protocol.py): G replicas, one per
block worker, each computing 1/G of the gradient and exchanging its part with the others through the step
Redis. The model of one step on G workers, with a one-way latency d between the workers and Redis:

    T(G, d) = C / G + f + [G > 1] x(G) + 2 d r(G)

    C     the gradient's compute on one core (measured: a gang of one's gradient time per step)
    f     the rest of a step on a replica: update, loss, per-epoch evaluation, reports (T(1, 0) - C)
    x(G)  the exchange: x1 + B(G) / S, with B(G) = 2 (G - 1) 8P the bytes the step Redis relays per step (each
          replica's part of P/G float64 parameters written to G - 1 inboxes and read from them), S the rate at
          which one Redis relays bytes and x1 its fixed cost (both measured uncontended, by one client pushing
          and popping parts as a replica does); Redis is single-threaded, so every replica waits for B(G) / S
    r(G)  round trips a replica waits for per step (counted at the proxies: requests sent after a reply):
          the push of its part, the blocking pop of the first part to arrive, one pop of the rest (G > 2),
          and replica 0's amortized checks and reports

The runs' block workers reach both Redis servers through `bench/delay_proxy.py`, adding d = 0.1, 0.5 and 2
ms each way; the prediction for each d uses only the run at d = 0 and the round trips counted there:
T(G, d) = T(G, 0) + 2 d r(G). On one machine the G = 2 run also pays for sharing its cores with Redis, the
proxies and the coordinator; the bench prints that share (the measured T(2, 0) minus the model's) and leaves
it out of the prediction for G machines, each with its own cores.

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
from service import run_job  # bench/service.py: submit, poll, fail loudly

from worker.cluster.launcher import LocalCluster
from worker.cluster.redis_auth import APP_USER
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
    return run_job(api, body)


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
                    trips = sum(a.round_trips - b.round_trips for a, b in pairs)
                    results[(name, groups)] = {"ms": step_ms(job), "kb": moved / args.iters / 1000,
                                               "trips": trips / args.iters / groups,
                                               "compute_ms": 1000 * job["timings"]["gradient_s"] / args.iters}
            results["exchange"] = {name: exchange_cost(cluster.settings.step_url, n_params(hidden))
                                   for name, (_, hidden) in CONFIGS.items()}
        for proxy in proxies:
            proxy.stop()
    return results


def exchange_cost(url: str, params: int, repeats: int = 200) -> tuple[float, float]:
    """(x1 in ms, S in bytes/s) of the step Redis at `url`, uncontended: one client pushes a part of half
    the parameters to an inbox and pops it, as a replica of a gang of 2 does each step, then the same with
    a part 1/16 as large; the fixed cost and the rate come from the two sizes."""
    times = {}
    with redis.Redis.from_url(url) as client:
        for size in (params // 2, params // 32):
            part = os.urandom(8 * size)
            began = time.perf_counter()
            for _ in range(repeats):
                with client.pipeline(transaction=False) as pipe:
                    pipe.rpush("bench:inbox", part)
                    pipe.expire("bench:inbox", 60)
                    pipe.execute()
                client.blpop(["bench:inbox"], timeout=1)
            times[size] = (time.perf_counter() - began) / repeats
        client.delete("bench:inbox")
    big, small = params // 2, params // 32
    rate = 2 * 8 * (big - small) / max(times[big] - times[small], 1e-9)  # each part is written and read
    fixed = times[small] - 2 * 8 * small / rate
    return 1000 * max(fixed, 0.0), rate


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
        params = n_params(hidden)
        fixed, rate = base["exchange"][name]
        compute, one, two = base[(name, 1)]["compute_ms"], base[(name, 1)]["ms"], base[(name, 2)]["ms"]
        rest = one - compute

        def exchange_ms(machines: int, fixed: float = fixed, rate: float = rate, params: int = params) -> float:
            return fixed + 1000 * 2 * (machines - 1) * 8 * params / rate if machines > 1 else 0.0

        shared = two - (compute / 2 + rest + exchange_ms(2))
        out(f"\n{name} (784-{hidden}-10, batch 100, P = {params} parameters): C = {compute:.2f} ms, "
            f"f = {rest:.2f} ms; step Redis uncontended: x1 = {fixed:.2f} ms, S = {rate / 1e9:.2f} GB/s; "
            f"x(2) = {exchange_ms(2):.2f} ms; cores shared on this machine at G = 2: {shared:.2f} ms a step")
        out("  d (ms)   G   measured   predicted   r (round trips/replica/step)   kB/step at the proxies")
        for d in delays:
            for groups in (1, 2):
                row = measured[d][(name, groups)]
                trips = base[(name, groups)]["trips"]
                predicted = base[(name, groups)]["ms"] + 2 * trips * d * 1000
                out(f"  {1000 * d:6.1f}  {groups:2d}   {row['ms']:7.2f}     {predicted:7.2f}      {trips:6.2f}"
                    f"                      {row['kb']:8.0f}")
        trips = base[(name, 2)]["trips"] + 1  # one more pop, of the rest of the parts, for G > 2
        net = min(rate, args.gbits * 1e9 / 8)
        out(f"  predicted on G machines (d = {args.lan_delay_ms} ms, r = {trips:.1f}, the step Redis relaying at "
            f"{net / 1e9:.2f} GB/s):")
        for machines in (1, 2, 4, 8, 16):
            relayed = 2 * (machines - 1) * 8 * params
            exchange = fixed + 1000 * relayed / net if machines > 1 else 0.0
            predicted = compute / machines + rest + exchange + 2 * trips * args.lan_delay_ms * (machines > 1)
            out(f"    G = {machines:2d}: {predicted:7.2f} ms per step, {one / predicted:4.2f}x one worker "
                f"(compute {compute / machines:.2f}, exchange {exchange:.2f}; {relayed / 1e6:.1f} MB through the "
                "step Redis)")


if __name__ == "__main__":
    main()
