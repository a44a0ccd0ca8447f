"""Following a job or a sweep to its end, with a progress bar: a widget in Jupyter, text in a terminal.

A job is followed through its event stream (each iteration's progress as the coordinator publishes it);
if the stream drops, one poll of the job's status stands in and the stream is opened again. A sweep is
polled: one request returns every job's progress.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from zdl.client.connection import EVENT_READ_TIMEOUT_S, Connection
from zdl.client.errors import QuotaExceeded

FINISHED = ("succeeded", "failed", "cancelled")
SWEEP_POLL_S = 0.5
#: After the event stream drops, wait this long before polling and opening it again.
STREAM_RETRY_S = 1.0


def progress_bar(total: int, description: str, enabled: bool) -> Any:
    """A tqdm bar from `tqdm.auto` (an ipywidgets bar in a notebook when ipywidgets is installed)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="it", disable=not enabled, dynamic_ncols=True)


def follow_job(connection: Connection, record: dict[str, Any], show: bool, deadline: float | None) -> dict[str, Any]:
    """Show the job's progress until it ends (or `deadline`, a time.monotonic(), passes: TimeoutError);
    returns its final record."""
    bar = progress_bar(record["progress"]["total"], f"job {record['id'][:8]}", show)
    try:
        _show_job(bar, {**record["progress"], **record["latest"]})
        while record["status"] not in FINISHED:
            _check_deadline(deadline, f"job {record['id']}", record["status"])
            try:
                for event in connection.events(record["links"]["events"], _read_timeout(deadline)):
                    _show_job(bar, event)
                    if event.get("type") == "status" and event.get("status") in FINISHED:
                        break
                    _check_deadline(deadline, f"job {record['id']}", event.get("status", record["status"]))
            except (httpx.TransportError, QuotaExceeded):  # the stream dropped, was silent, or the key holds its
                # limit of open streams (ZDL_MAX_STREAMS_PER_KEY): one poll below, then the stream again
                if deadline is None or time.monotonic() < deadline:
                    time.sleep(STREAM_RETRY_S)
            record = connection.json("GET", record["links"]["self"])
            _show_job(bar, {**record["progress"], **record["latest"]})
    finally:
        bar.close()
    return record


def follow_sweep(connection: Connection, record: dict[str, Any], show: bool,
                 deadline: float | None) -> dict[str, Any]:
    """One bar for all of the sweep's iterations, polled until every job has ended; the final record."""
    bar = progress_bar(record["progress"]["total"], f"sweep {record['id'][:8]}", show)
    try:
        _show_sweep(bar, record)
        while record["status"] != "finished":
            _check_deadline(deadline, f"sweep {record['id']}", record["status"])
            time.sleep(SWEEP_POLL_S)
            record = connection.json("GET", record["links"]["self"])
            _show_sweep(bar, record)
    finally:
        bar.close()
    return record


def _read_timeout(deadline: float | None) -> float:
    """How long the stream may stay silent: its usual limit, or less when a deadline comes sooner."""
    if deadline is None:
        return EVENT_READ_TIMEOUT_S
    return max(0.1, min(EVENT_READ_TIMEOUT_S, deadline - time.monotonic()))


def _check_deadline(deadline: float | None, what: str, status: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(f"{what} is still {status}; wait longer, or cancel it")


def _show_job(bar: Any, event: dict[str, Any]) -> None:
    if event.get("iteration") is not None:
        bar.n = int(event["iteration"])
    postfix = {k: f"{event[k]:.4f}" for k in ("loss", "test_acc") if event.get(k) is not None}
    if postfix:
        bar.set_postfix(postfix, refresh=False)
    bar.refresh()


def _show_sweep(bar: Any, record: dict[str, Any]) -> None:
    """Iterations done, where a job that ended early (failed, cancelled) counts as done: the bar is full when
    every job has ended."""
    ended = [run["status"] in (*FINISHED, "deleted") for run in record["runs"]]
    bar.n = sum(run["total"] if end else run["iteration"] for run, end in zip(record["runs"], ended, strict=True))
    done = sum(ended)
    postfix = {"done": f"{done}/{record['size']}"}
    best = next((run for run in record["runs"] if run["job_id"] == record.get("best")), None)
    if best is not None and best["test_acc"] is not None:
        postfix["best test_acc"] = f"{best['test_acc']:.4f}"
    bar.set_postfix(postfix, refresh=False)
    bar.refresh()
