"""How a job ends when it cannot succeed: the exceptions that stop it, and the reason its owner reads.

A job's `error` is shown to its owner, who must not learn the workers' file paths, host names or Redis
addresses: the full exception goes to the worker's log (with the job id), the record gets `public_reason`.
"""

from __future__ import annotations

import re

from zdl.datasets import DatasetError, DatasetNotFoundError


class JobCancelled(Exception):
    """The job's cancel flag was seen; the coordinator stops at the next safe point."""


class BlockFailed(RuntimeError):
    """A block group reported a deterministic error; retrying would fail again."""


class GroupCancelled(Exception):
    """Raised from the engine's check: the job of the block group being computed has been cancelled."""


class GroupHandedBack(Exception):
    """Raised from the engine's check: the block loop's turn is over and other loops wait for the worker."""


class JobStopped(Exception):
    """The job must end `failed` for a reason that is already fit to show (diverged, over its time limit)."""

    def __init__(self, reason: str, **fields: object) -> None:
        super().__init__(reason)
        self.fields = fields


class CoordinatorStopping(Exception):
    """This coordinator process was asked to stop: the job is checkpointed and resumes elsewhere."""


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_PATH = re.compile(r"(?<![\w.])(?:~|\.{1,2})?/(?:[\w.@+-]+/?)+")


def scrubbed(text: str) -> str:
    """`text` without URLs and file paths (replaced by <url> and <path>)."""
    return _PATH.sub("<path>", _URL.sub("<url>", text))


def public_reason(exc: BaseException, dataset: str | None = None) -> str:
    """Why the job failed, in words its owner can act on, and nothing about the machines it ran on."""
    if isinstance(exc, JobStopped):
        return str(exc)
    if isinstance(exc, DatasetNotFoundError):
        return (f"data set {dataset!r} is not available on the service's workers; its operator must provide "
                "the four files (ZDL_DATA_DIR) where coordinators and block workers run, or allow downloads")
    if isinstance(exc, DatasetError):
        return f"data set {dataset!r} could not be read on the service's workers (corrupt or truncated " \
               "files); the service's operator must replace them"
    if isinstance(exc, MemoryError):
        return "out of memory while computing this job; make it smaller (hidden size or batch size)"
    if isinstance(exc, (BlockFailed, ValueError)):
        return scrubbed(str(exc))
    return f"internal error ({type(exc).__name__}); the service's operator can find it in the worker log"


def node_label(hostname: str) -> str:
    """A Celery node name without its host: "coordinator@host.example" -> "coordinator"."""
    return hostname.split("@", 1)[0]
