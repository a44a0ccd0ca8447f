"""One training job on a zdl service: its status, waiting for it, and its results as zdl objects.

`job.history` is a `zdl.history.History` and `job.net` a `zdl.nets.TwoLayerNet`, the same objects a local
`zdl.train.train` returns, so a notebook treats a service run and a local run alike.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from zdl.client.connection import Connection
from zdl.client.errors import JobFailed
from zdl.client.figures import training_figure
from zdl.client.progress import FINISHED, follow_job
from zdl.history import History
from zdl.io import load_weights
from zdl.spec import JobSpec

if TYPE_CHECKING:
    from zdl.nets import TwoLayerNet


def history_from_json(data: dict[str, Any]) -> History:
    """A History from the service's JSON, where a NaN or infinite loss (a diverged run) arrives as null."""
    history = History.from_dict(data)
    history.loss = [math.nan if value is None else float(value) for value in history.loss]
    return history


class Job:
    """A job of this client's key. `record` is its last-read state (GET /v1/jobs/{id}); `refresh()` reads it
    again. Results are read when asked for and kept once the job has ended (they no longer change)."""

    def __init__(self, connection: Connection, record: dict[str, Any]) -> None:
        self.connection = connection
        self.record = record
        self._history: History | None = None
        self._net: TwoLayerNet | None = None

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def spec(self) -> dict[str, Any]:
        """The job body as the service stored it: model, dataset, training, gradient."""
        return dict(self.record["spec"])

    @property
    def finished(self) -> bool:
        return self.record["status"] in FINISHED

    def refresh(self) -> dict[str, Any]:
        """Read the job's state again; returns the record."""
        self.record = self.connection.json("GET", f"/v1/jobs/{self.id}")
        return self.record

    def status(self) -> str:
        """The job's status now: queued, running, succeeded, failed or cancelled."""
        return str(self.refresh()["status"])

    def wait(self, progress: bool = True, timeout: float | None = None, check: bool = True) -> Job:
        """Block until the job ends, with a progress bar (`progress=False`: none); returns the job.

        check: raise JobFailed if it ended failed (e.g. diverged) or cancelled. timeout: seconds, then
        TimeoutError (the job goes on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.finished:
            self.record = follow_job(self.connection, self.record, progress, deadline)
        if check and self.record["status"] != "succeeded":
            raise JobFailed(self)
        return self

    @property
    def history(self) -> History:
        """Loss per iteration and accuracies per evaluation (so far, while it runs)."""
        if self._history is not None:
            return self._history
        history = history_from_json(self.connection.json("GET", f"/v1/jobs/{self.id}/history"))
        if self.finished:
            self._history = history
        return history

    @property
    def net(self) -> TwoLayerNet:
        """The trained network (a succeeded job's weights; Conflict for any other)."""
        if self._net is None:
            self._net = load_weights(self.connection.request("GET", f"/v1/jobs/{self.id}/weights").content)
        return self._net

    def plot(self) -> Any:
        """A matplotlib figure of the loss and accuracy curves (shown inline when it is a cell's value)."""
        title = f"job {self.id[:8]} ({self.record['status']}): {describe_spec(self.record['spec'])}"
        return training_figure({"": self.history}, title=title)

    def log(self) -> list[dict[str, Any]]:
        """The job's event log, oldest first: queued, started where and how, checkpoints, resumed and why,
        cancel asked, finished and why (each a dict with `time`, `event` and its details)."""
        return list(self.connection.json("GET", f"/v1/jobs/{self.id}/log")["events"])

    def cancel(self) -> Job:
        """Cancel it: a queued job at once, a running one at its next iteration; a finished one is left as it is."""
        self.record = self.connection.json("POST", f"/v1/jobs/{self.id}/cancel")
        return self

    def delete(self) -> None:
        """Delete a finished job and everything stored for it (Conflict while it is queued or running)."""
        self.connection.request("DELETE", f"/v1/jobs/{self.id}")

    def __repr__(self) -> str:
        done = f"{self.record['progress']['iteration']}/{self.record['progress']['total']}"
        return f"<Job {self.id[:8]} {self.record['status']} {done}: {describe_spec(self.record['spec'])}>"


def describe_spec(body: dict[str, Any]) -> str:
    """"mnist, hidden 50, lr 0.1, batch 100, numerical": what a job trains, in one line."""
    spec = JobSpec.model_validate(body)
    return (f"{spec.dataset}, hidden {spec.model.hidden_size}, lr {spec.training.learning_rate:g}, "
            f"batch {spec.training.batch_size}, {spec.gradient.method}")

