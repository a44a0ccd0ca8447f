"""`zdl logs ID`: a job's event log, one line per event, for the person who asked "why did my job fail?"."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from zdl.client.client import Client


def register(subparsers: argparse._SubParsersAction, add_service_arguments: Callable[[argparse.ArgumentParser], None],
             service: Callable[[argparse.Namespace], AbstractContextManager[Client]]) -> None:
    """Adds `zdl logs`; `service(args)` opens the client as `zdl submit` does (same --url and --api-key)."""
    p = subparsers.add_parser("logs", help="a job's event log: started where, checkpoints, resumed and why, "
                                           "finished and why")
    add_service_arguments(p)
    p.add_argument("job_id", help="the job's id (as `zdl submit` prints it)")
    p.set_defaults(func=lambda args: run_logs(args, service))


def run_logs(args: argparse.Namespace, service: Callable[[argparse.Namespace], AbstractContextManager[Client]]) -> int:
    with service(args) as client:
        events = client.job(args.job_id).log()
    for event in events:
        sys.stdout.write(describe(event) + "\n")
    return 0


def describe(event: dict[str, Any]) -> str:
    """One line: UTC time, the event, its details as key=value."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(event.get("time", 0))))
    details = " ".join(f"{k}={_value(v)}" for k, v in event.items() if k not in ("time", "event", "last_time"))
    return f"{stamp}Z  {event.get('event', '?'):<13} {details}".rstrip()


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    text = str(value)
    return f'"{text}"' if " " in text else text
