"""Structured logs: every process of the service writes JSON lines a person or a log shipper can follow.

Each line: time (UTC, ISO 8601), level, role (api, worker), process (its name under `zdl cluster up`:
coordinator, blocks1, api), logger, message, and what it concerns when known: request_id (the API's
X-Request-ID), job_id, key (the caller's key name, never the key), worker (the Celery worker's hostname).
Those come from context variables set where the request or the task starts (api/access_log.py, the
Celery task signals), so a log call never has to pass them.

Lines go to stderr, and with `ZDL_LOG_DIR` (`zdl cluster up` sets it to its `--log-dir`) also to a rotating
file `<process>.jsonl` there (ZDL_LOG_FILE_MB per file, ZDL_LOG_FILES kept); stderr then carries only
warnings and errors, so the process's captured output stays small.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import Any

from worker.settings import Settings

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("zdl_request_id", default=None)
job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("zdl_job_id", default=None)
key_name: contextvars.ContextVar[str | None] = contextvars.ContextVar("zdl_key_name", default=None)
worker: contextvars.ContextVar[str | None] = contextvars.ContextVar("zdl_worker", default=None)
CONTEXT = {"request_id": request_id, "job_id": job_id, "key": key_name, "worker": worker}
#: Fields a log call may pass with `extra=` (the access log's).
EXTRA_FIELDS = ("status", "duration_ms")

#: Set by worker/cluster/processes.py for each process it starts (its name: coordinator, blocks1, api).
PROCESS_NAME_ENV = "ZDL_PROCESS_NAME"


class JsonLines(logging.Formatter):
    """A record as one JSON object per line."""

    def __init__(self, role: str, process: str) -> None:
        super().__init__()
        self.role, self.process = role, process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "role": self.role, "process": self.process, "logger": record.name,
            "message": record.getMessage()}
        for name, var in CONTEXT.items():
            value = getattr(record, name, None) or var.get()
            if value:
                line[name] = value
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class StderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever sys.stderr is at the time (a test runner swaps it), never to a closed stream."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(role: str, settings: Settings) -> None:
    """Send this process's log records, as JSON lines, to stderr and (with settings.log_dir) to its rotating file.
    Calling it again replaces the handlers it installed before."""
    process = os.environ.get(PROCESS_NAME_ENV) or f"{role}-{os.getpid()}"
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "zdl", False)]:
        root.removeHandler(handler)
        handler.close()
    formatter = JsonLines(role, process)
    handlers: list[logging.Handler] = [StderrHandler()]
    handlers[0].setLevel(logging.WARNING if settings.log_dir else logging.INFO)
    if settings.log_dir:
        Path(settings.log_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(
            Path(settings.log_dir) / f"{process}.jsonl", maxBytes=int(settings.log_file_mb * 1e6),
            backupCount=settings.log_files, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.zdl = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
