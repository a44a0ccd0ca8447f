"""`Client`: a zdl service (`zdl cluster up`, docker compose) as one API key sees it, from Python.

    from zdl.client import Client
    client = Client()                                   # the cluster `zdl cluster up` started ($ZDL_URL...)
    job = client.submit(iters=2000, learning_rate=0.5)  # TrainConfig's names, plus dataset and blocks
    job.wait()                                          # progress bar; JobFailed if it fails or diverges
    job.history, job.net, job.plot()                    # zdl's History and TwoLayerNet, matplotlib figures
    sweep = client.sweep({"learning_rate": [0.01, 0.1, 1, 10], "hidden_size": [50, 100]}, iters=500)
    sweep.wait().results()                              # one bar for all 8 jobs; a DataFrame, best first
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from zdl.client.admin import Admin
from zdl.client.bodies import SWEEP_SETTINGS, check_names, job_body, plain
from zdl.client.connection import Connection
from zdl.client.jobs import Job
from zdl.client.sweeps import Sweep
from zdl.train import TrainConfig


class Client:
    """url: the service (default $ZDL_URL, else the URL `zdl cluster up` saved in its state dir, else
    http://127.0.0.1:8000); api_key: default $ZDL_API_KEY, else the key saved there (zdl.paths says where).
    retries and backoff_s: see zdl.client.connection.Connection."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout_s: float = 30.0,
                 retries: int = 5, backoff_s: float = 0.25) -> None:
        self.connection = Connection(url, api_key, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)

    @property
    def url(self) -> str:
        return self.connection.url

    @property
    def admin(self) -> Admin:
        """Keys, everyone's jobs and the workers (needs an admin key)."""
        return Admin(self.connection)

    def usage(self) -> dict[str, Any]:
        """This key's measured CPU time and storage against its limits (and every key's, for an admin key)."""
        return dict(self.connection.json("GET", "/v1/usage"))

    def submit(self, config: TrainConfig | None = None, /, **settings: Any) -> Job:
        """Start a job: `config` (default: the book's run, 10,000 iterations) with `settings` on top, named as
        TrainConfig's fields (hidden_size, weight_init_std, iters, batch_size, learning_rate, seed, gradient),
        plus dataset ("mnist" or "fashion-mnist") and blocks ("auto" or a number). Safe to retry: the
        request carries an Idempotency-Key, so a resent submit never makes a second job."""
        body = job_body(config, **settings)
        record = self.connection.json("POST", "/v1/jobs", json_body=body,
                                      headers={"Idempotency-Key": uuid.uuid4().hex})
        return Job(self.connection, record)

    def job(self, job_id: str) -> Job:
        """A job of this key by its id (NotFound if there is none)."""
        return Job(self.connection, self.connection.json("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, status: str | None = None, limit: int = 100) -> list[Job]:
        """This key's jobs, newest first (at most `limit`), optionally only those in one status."""
        found: list[Job] = []
        while len(found) < limit:
            params: dict[str, Any] = {"offset": len(found), "limit": min(limit - len(found), 100)}
            if status is not None:
                params["status"] = status
            page = self.connection.json("GET", "/v1/jobs", params=params)
            found += [Job(self.connection, record) for record in page["items"]]
            if not page["items"] or len(found) >= page["total"]:
                break
        return found

    def sweep(self, grid: Mapping[str, Sequence[Any]] | None = None, /, *,
              runs: Sequence[Mapping[str, Any]] | None = None, name: str | None = None,
              config: TrainConfig | None = None, **settings: Any) -> Sweep:
        """Start one job per combination of `grid`'s values (or per entry of `runs`), the others settings as in
        `submit`. The settings a sweep varies: learning_rate, hidden_size, batch_size, weight_init_std, seed,
        gradient, dataset. All the jobs are made or none (QuotaExceeded names the limit). Safe to retry."""
        if (grid is None) == (runs is None):
            raise TypeError("give either a grid ({setting: [values]}) or runs=[{setting: value}, ...]")
        for varied in [grid] if grid is not None else list(runs or []):
            check_names(varied or {}, SWEEP_SETTINGS, "sweep setting")
        request: dict[str, Any] = {"base": job_body(config, **settings)}
        if grid is not None:
            request["grid"] = {setting: [plain(v) for v in values] for setting, values in grid.items()}
        else:
            request["runs"] = [{setting: plain(v) for setting, v in run.items()} for run in runs or []]
        if name is not None:
            request["name"] = name
        record = self.connection.json("POST", "/v1/sweeps", json_body=request,
                                      headers={"Idempotency-Key": uuid.uuid4().hex})
        return Sweep(self.connection, record)

    def get_sweep(self, sweep_id: str) -> Sweep:
        """A sweep of this key by its id (NotFound if there is none)."""
        return Sweep(self.connection, self.connection.json("GET", f"/v1/sweeps/{sweep_id}"))

    def sweeps(self, limit: int = 20) -> list[Sweep]:
        """This key's sweeps, newest first (at most `limit`, up to the service's page size)."""
        page = self.connection.json("GET", "/v1/sweeps", params={"limit": limit})
        return [Sweep(self.connection, record) for record in page["items"]]

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<zdl Client {self.url}>"
