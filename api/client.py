"""`zdl submit`: post a job to a zdl service, follow it with a progress bar, download its results.

The flags are `zdl train`'s, so a local run and a service run are the same command line. Progress
comes from the job's Server-Sent Events stream, with polling as the fallback if the stream drops.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from zdl.cli import UserError, add_training_arguments

FINISHED = ("succeeded", "failed", "cancelled")
DEFAULT_URL = "http://127.0.0.1:8000"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Entry point (group `zdl.commands`): adds `zdl submit`."""
    p = subparsers.add_parser("submit", help="train on a zdl service (zdl cluster up) and download the results")
    p.add_argument("--url", default=os.environ.get("ZDL_URL", DEFAULT_URL), help=f"service URL (default $ZDL_URL "
                                                                                f"or {DEFAULT_URL})")
    p.add_argument("--api-key", default=None, help="API key (default $ZDL_API_KEY, else the key `zdl cluster up` "
                                                   "saved in its state dir)")
    add_training_arguments(p)
    p.add_argument("--blocks", default="auto", help="block groups per step (default auto: one per worker)")
    p.add_argument("--out", type=Path, required=True, help="write history.json, weights.npz and PNG curves here")
    p.set_defaults(func=run_submit)


def job_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /v1/jobs body for these flags."""
    blocks: int | str = args.blocks if args.blocks == "auto" else int(args.blocks)
    return {
        "model": {"hidden_size": args.hidden, "weight_init_std": args.weight_init_std},
        "dataset": args.dataset,
        "training": {"iters": args.iters, "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed},
        "gradient": {"method": args.gradient, "blocks": blocks},
    }


def api_key(flag: str | None) -> str | None:
    """--api-key, else $ZDL_API_KEY, else the key file of a default `zdl cluster up`, else None."""
    from worker.cluster import API_KEY_FILE, DEFAULT_STATE_DIR

    if flag:
        return flag
    if os.environ.get("ZDL_API_KEY"):
        return os.environ["ZDL_API_KEY"]
    try:
        return (DEFAULT_STATE_DIR / API_KEY_FILE).read_text().strip() or None
    except OSError:
        return None


def run_submit(args: argparse.Namespace) -> int:
    key = api_key(args.api_key)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=args.url, timeout=httpx.Timeout(30.0, read=60.0), headers=headers) as client:
        job = post_job(client, job_body(args))
        sys.stdout.write(f"job {job['id']} {job['status']} at {args.url}{job['links']['self']}\n")
        sys.stdout.flush()
        job = follow(client, job, show_progress=not args.no_progress)
        if job["status"] != "succeeded":
            raise UserError(f"job {job['id']} {job['status']}" + (f": {job['error']}" if job.get("error") else ""))
        for path in download(client, job, args.out):
            sys.stdout.write(f"wrote {path}\n")
    latest = job["latest"]
    sys.stdout.write(f"train acc {latest['train_acc']:.4f}  test acc {latest['test_acc']:.4f}  "
                     f"wall time {job['progress']['elapsed_s']:.1f} s\n")
    return 0


def post_job(client: httpx.Client, body: dict[str, Any], attempts: int = 3) -> dict[str, Any]:
    """POST the job; a retry after a dropped connection reuses the Idempotency-Key, so it never runs twice."""
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    for attempt in range(attempts):
        try:
            return checked(client.post("/v1/jobs", json=body, headers=headers))
        except httpx.TransportError as exc:
            if attempt == attempts - 1:
                raise unreachable(client, exc) from None
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def follow(client: httpx.Client, job: dict[str, Any], show_progress: bool = True) -> dict[str, Any]:
    """Show progress until the job ends; returns its final record."""
    from tqdm import tqdm

    bar = tqdm(total=job["progress"]["total"], unit="it", disable=not show_progress, dynamic_ncols=True)
    try:
        while job["status"] not in FINISHED:
            try:
                for event in sse_events(client, job["links"]["events"]):
                    _update(bar, event)
                    if event.get("type") == "status" and event.get("status") in FINISHED:
                        break
            except httpx.TransportError:
                time.sleep(1.0)  # the stream dropped: fall back to one poll, then try the stream again
            job = get_job(client, job["id"])
            _update(bar, {**job["progress"], **job["latest"]})
    finally:
        bar.close()
    return job


def sse_events(client: httpx.Client, path: str) -> Iterator[dict[str, Any]]:
    """The JSON bodies of a Server-Sent Events stream (comments and pings skipped)."""
    with client.stream("GET", path, timeout=httpx.Timeout(30.0, read=None)) as response:
        checked(response, json_body=False)
        data: list[str] = []
        for line in response.iter_lines():
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                yield json.loads("\n".join(data))
                data = []


def download(client: httpx.Client, job: dict[str, Any], out: Path) -> list[Path]:
    """history.json, weights.npz and the training curves, written atomically into `out`."""
    from zdl.history import History
    from zdl.io import atomic_write_bytes
    from zdl.plot import write_training_plots

    history = checked(client.get(job["links"]["history"]))
    weights = client.get(job["links"]["weights"])
    checked(weights, json_body=False)
    paths = [atomic_write_bytes(out / "history.json", json.dumps(history).encode()),
             atomic_write_bytes(out / "weights.npz", weights.content)]
    return paths + write_training_plots(History.from_dict(history), out)


def get_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    try:
        return checked(client.get(f"/v1/jobs/{job_id}"))
    except httpx.TransportError as exc:
        raise unreachable(client, exc) from None


def checked(response: httpx.Response, json_body: bool = True) -> Any:
    """The JSON body of a 2xx response; a UserError with the server's `detail` otherwise."""
    if response.is_error:
        response.read()
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise UserError(f"{response.request.method} {response.request.url.path}: {response.status_code} {detail}")
    return response.json() if json_body else response


def unreachable(client: httpx.Client, exc: Exception) -> UserError:
    return UserError(f"cannot reach the zdl service at {client.base_url} ({exc}); start one with `zdl cluster up` "
                     "or pass --url")


def _update(bar: Any, event: dict[str, Any]) -> None:
    if event.get("iteration") is not None:
        bar.n = int(event["iteration"])
    postfix = {k: f"{event[k]:.4f}" for k in ("loss", "test_acc") if event.get(k) is not None}
    if postfix:
        bar.set_postfix(postfix, refresh=False)
    bar.refresh()
