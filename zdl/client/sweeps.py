"""A sweep on a zdl service: many variations of one job, followed with one progress bar and compared in a table.

The table comes from the service (GET /v1/sweeps/{id}), best first: succeeded runs by test accuracy,
then lower final loss; then runs still going, cancelled ones, and failed ones (a diverged run among
them, with `diverged` set).
"""

from __future__ import annotations

import time
from typing import Any

from zdl.client.bodies import describe
from zdl.client.connection import Connection
from zdl.client.figures import training_figure
from zdl.client.jobs import Job, history_from_json
from zdl.client.progress import follow_sweep
from zdl.history import History

#: The table's columns after the varied settings.
RESULT_COLUMNS = ("status", "diverged", "final_loss", "train_acc", "test_acc", "iteration", "elapsed_s", "job_id",
                  "error")


class Sweep:
    """A sweep of this client's key; `record` is its last-read state, `refresh()` reads it again."""

    def __init__(self, connection: Connection, record: dict[str, Any]) -> None:
        self.connection = connection
        self.record = record

    @property
    def id(self) -> str:
        return str(self.record["id"])

    def refresh(self) -> dict[str, Any]:
        self.record = self.connection.json("GET", f"/v1/sweeps/{self.id}")
        return self.record

    def status(self) -> str:
        """queued (no job started yet), running, or finished (every job has ended)."""
        return str(self.refresh()["status"])

    def wait(self, progress: bool = True, timeout: float | None = None) -> Sweep:
        """Block until every job has ended, with one progress bar for all of them; returns the sweep. Runs that
        fail (a learning rate that diverges) are results too: nothing is raised for them."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.record["status"] != "finished":
            self.record = follow_sweep(self.connection, self.record, progress, deadline)
        return self

    def rows(self) -> list[dict[str, Any]]:
        """The results table as a list of dicts, best first: the varied settings, then RESULT_COLUMNS."""
        return [{**run["params"], **{column: run[column] for column in RESULT_COLUMNS}} for run in self.record["runs"]]

    def results(self, frame: bool | None = None) -> Any:
        """The results table, best first: a pandas DataFrame if pandas is installed (or `frame=True`), else
        the list of dicts of `rows()`. Read when called: `wait()` first for final numbers."""
        self.refresh()
        rows = self.rows()
        if frame is False:
            return rows
        try:
            import pandas as pd
        except ImportError:
            if frame:
                raise
            return rows
        columns = [*self.record["axes"], *RESULT_COLUMNS]
        return pd.DataFrame(rows, columns=columns)

    @property
    def jobs(self) -> list[Job]:
        """The sweep's jobs, best first (as in the table); each as `Client.job` gives it."""
        return [Job(self.connection, self.connection.json("GET", run["links"]["job"]))
                for run in self.record["runs"] if run["status"] != "deleted"]

    @property
    def best(self) -> Job | None:
        """The succeeded job with the best test accuracy, or None if none has succeeded (yet)."""
        best = self.record.get("best")
        return Job(self.connection, self.connection.json("GET", f"/v1/jobs/{best}")) if best else None

    def histories(self) -> dict[str, History]:
        """Each run's history by its label ("learning_rate=0.1, seed=1"), best first."""
        return {describe(run["params"]): self._history(run) for run in self._live_runs()}

    def plot(self) -> Any:
        """Every run's loss and accuracy curves overlaid, the best one thick, diverged ones marked in the legend
        (shown inline as a cell's value)."""
        runs = self._live_runs()
        labels = [describe(run["params"]) + (" (diverged)" if run["diverged"] else "") for run in runs]
        histories = {label: self._history(run) for label, run in zip(labels, runs, strict=True)}
        best = next((label for label, run in zip(labels, runs, strict=True)
                     if run["job_id"] == self.record.get("best")), None)
        return training_figure(histories, best=best, title=f"sweep {self.id[:8]}: {', '.join(self.record['axes'])}")

    def cancel(self) -> Sweep:
        """Cancel every job: queued ones at once, running ones at their next iteration."""
        self.record = self.connection.json("POST", f"/v1/sweeps/{self.id}/cancel")
        return self

    def delete(self) -> None:
        """Delete the sweep and all its jobs (Conflict while any is queued or running: cancel first)."""
        self.connection.request("DELETE", f"/v1/sweeps/{self.id}")

    def _history(self, run: dict[str, Any]) -> History:
        return history_from_json(self.connection.json("GET", run["links"]["history"]))

    def _live_runs(self) -> list[dict[str, Any]]:
        return [run for run in self.record["runs"] if run["status"] != "deleted"]

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.record["counts"].items() if n)
        return f"<Sweep {self.id[:8]} {self.record['status']}: {self.record['size']} jobs over " \
               f"{', '.join(self.record['axes'])} ({counts})>"
