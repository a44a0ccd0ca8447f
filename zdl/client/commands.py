"""`zdl jobs`, `zdl status ID`, `zdl cancel ID`, `zdl download ID --out DIR`: a key's jobs from the command line.

Each is a thin layer over `zdl.client.Client`, which finds the cluster `zdl cluster up` started (its URL and
key in the state dir; --url, --api-key, $ZDL_URL and $ZDL_API_KEY choose another). A job is named by its
id or by the first characters of it that `zdl jobs` shows. Every error is one line and exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zdl.cli import UserError, write_run
from zdl.client.client import Client
from zdl.client.errors import ClientError, NotFound
from zdl.client.jobs import Job, describe_spec
from zdl.client.progress import FINISHED

#: `zdl jobs` shows this many characters of each id: enough to tell a key's jobs apart, short enough to type.
SHORT_ID = 8
JOB_COLUMNS = ("id", "status", "progress", "loss", "test_acc", "created", "settings")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Entry point (group `zdl.commands`): adds `zdl jobs`, `zdl status`, `zdl cancel`, `zdl download`."""
    p = subparsers.add_parser("jobs", help="list your jobs on the service, newest first")
    add_service_arguments(p)
    p.add_argument("--status", choices=("queued", "running", *FINISHED), default=None, help="only jobs in this status")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.set_defaults(func=run_jobs)
    for name, func, text in (("status", run_status, "a job's status, progress, latest loss and accuracy"),
                             ("cancel", run_cancel, "cancel a queued or running job")):
        p = subparsers.add_parser(name, help=text)
        add_service_arguments(p)
        p.add_argument("id", help="the job's id, or its first characters as `zdl jobs` shows them")
        p.set_defaults(func=func)
    p = subparsers.add_parser("download", help="write a finished job's results as `zdl submit --out` does")
    add_service_arguments(p)
    p.add_argument("id", help="the job's id, or its first characters as `zdl jobs` shows them")
    p.add_argument("--out", type=Path, required=True, help="write history.json, weights.npz and PNG curves here")
    p.set_defaults(func=run_download)


def add_service_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None, help="service URL (default $ZDL_URL, else the URL `zdl cluster up` saved)")
    p.add_argument("--api-key", default=None, help="API key (default $ZDL_API_KEY, else the key `zdl cluster up` "
                                                   "saved in its state dir)")


@contextlib.contextmanager
def service(args: argparse.Namespace) -> Iterator[Client]:
    """A client of --url with --api-key; its errors (unreachable, 401, a failed job) as one-line UserErrors."""
    try:
        with Client(args.url, args.api_key) as client:
            yield client
    except ClientError as exc:
        raise UserError(str(exc)) from None


def find_job(client: Client, job_id: str) -> Job:
    """The key's job with this id, or the only one whose id starts with it (UserError if none or several)."""
    with contextlib.suppress(NotFound):
        return client.job(job_id)
    matches = [job for job in client.jobs(limit=1000) if job.id.startswith(job_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"no job {job_id!r} for this key at {client.url}; `zdl jobs` lists them")
    some = ", ".join(job.id for job in matches[:5])
    raise UserError(f"{len(matches)} jobs start with {job_id!r}: {some}; give more of it")


def run_jobs(args: argparse.Namespace) -> int:
    with service(args) as client:
        jobs = client.jobs(status=args.status, limit=args.limit)
        if not jobs:
            say(f"no jobs{' ' + args.status if args.status else ''} for this key at {client.url}")
            return 0
        say(table([job_row(job.record) for job in jobs], JOB_COLUMNS))
    return 0


def job_row(record: dict[str, Any]) -> dict[str, Any]:
    progress, latest = record["progress"], record["latest"]
    return {"id": record["id"][:SHORT_ID], "status": record["status"],
            "progress": f"{progress['iteration']}/{progress['total']}", "loss": latest.get("loss"),
            "test_acc": latest.get("test_acc"), "created": str(record["timings"]["created_at"])[:19].replace("T", " "),
            "settings": describe_spec(record["spec"])}


def run_status(args: argparse.Namespace) -> int:
    with service(args) as client:
        record = find_job(client, args.id).record
    progress, latest = record["progress"], record["latest"]
    say(f"job {record['id']}: {record['status']}, iteration {progress['iteration']} of {progress['total']}")
    say(f"  trains {describe_spec(record['spec'])}, {record['spec']['training']['iters']} iterations")
    say("  latest " + ", ".join(f"{name} {_cell(latest.get(name))}" for name in ("loss", "train_acc", "test_acc")))
    if record.get("error"):
        say(f"  error: {record['error']}")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    with service(args) as client:
        job = find_job(client, args.id)
        before = job.record["status"]
        job.cancel()
    if before in FINISHED:
        say(f"job {job.id} had already ended ({before}); nothing to cancel")
    else:
        say(f"job {job.id} {job.record['status']} (was {before})")
    return 0


def run_download(args: argparse.Namespace) -> int:
    with service(args) as client:
        job = find_job(client, args.id)
        status, progress = job.record["status"], job.record["progress"]
        if status != "succeeded":
            ended = f": {job.record['error']}" if job.record.get("error") else ""
            raise UserError(f"job {job.id} is {status} (iteration {progress['iteration']} of {progress['total']})"
                            f"{ended}; only a succeeded job has results to download")
        for path in write_run(args.out, job.net.params, job.history):
            say(f"wrote {path}")
    return 0


def table(rows: list[dict[str, Any]], columns: list[str] | tuple[str, ...]) -> str:
    """Rows as a plain-text table, numbers to 4 significant digits, missing values as '-'."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
