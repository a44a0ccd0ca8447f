"""Structured logs in the Celery workers: JSON lines (worker/telemetry/structured_log.py) instead of Celery's
own format, and each task's job id and worker hostname on every line written while it runs."""

from __future__ import annotations

from typing import Any

from celery import signals

from worker.settings import get_settings
from worker.telemetry import structured_log


@signals.setup_logging.connect
def json_logs(**_: Any) -> None:
    """Connected, this replaces Celery's logging set-up in the worker (and its pool processes) entirely."""
    structured_log.configure("worker", get_settings())


@signals.task_prerun.connect
def task_context(task: Any = None, args: Any = None, **_: Any) -> None:
    """The job a task works for: run_job's first argument is its id; block loops and replicas carry it in a dict."""
    first = args[0] if args else None
    job = first if isinstance(first, str) else first.get("job_id") if isinstance(first, dict) else None
    structured_log.job_id.set(job)
    structured_log.worker.set(getattr(getattr(task, "request", None), "hostname", None))


@signals.task_postrun.connect
def clear_task_context(**_: Any) -> None:
    structured_log.job_id.set(None)
    structured_log.worker.set(None)
