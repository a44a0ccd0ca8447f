"""zdl.client against the real service: every call, its errors, retries without duplicates, waiting on jobs
that fail or are cancelled, and sweeps with their table and figures."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

from bench import faults
from worker.cluster.processes import free_port
from zdl.client import (
    AuthenticationError,
    Client,
    Conflict,
    InvalidRequest,
    JobFailed,
    NotFound,
    QuotaExceeded,
    ServiceUnreachable,
)
from zdl.history import History
from zdl.nets import TwoLayerNet
from zdl.train import TrainConfig

#: Jobs made here are deleted after each test (the session key has a stored-jobs quota).
pytestmark = pytest.mark.usefixtures("leaves_no_jobs")

API_KEY = "test-key-7f3a"  # conftest.API_KEY
SMALL = {"hidden_size": 8, "iters": 30, "batch_size": 20, "learning_rate": 0.1, "seed": 3}
#: Diverges at its first step (the output layer of 784-100-10 overflows): a job that fails.
DIVERGING = {"hidden_size": 100, "iters": 30, "batch_size": 20, "learning_rate": 1e308, "seed": 3,
             "gradient": "backprop"}
LONG = {**SMALL, "iters": 100_000}


@pytest.fixture
def client(cluster: Any) -> Iterator[Client]:
    with Client(cluster.url, API_KEY) as client:
        yield client


def test_submit_wait_and_results_as_zdl_objects(client: Client, local_run: Callable[..., Any]) -> None:
    job = client.submit(TrainConfig(**{**SMALL, "iters": 10}), iters=SMALL["iters"])  # settings override the config
    assert job.record["status"] == "queued" and job.spec["training"]["iters"] == 30
    assert job.wait(progress=False) is job and job.status() == "succeeded"
    history = job.history
    assert isinstance(history, History) and len(history.loss) == 30
    assert history.loss == client.connection.json("GET", f"/v1/jobs/{job.id}/history")["loss"]
    net = job.net
    assert isinstance(net, TwoLayerNet)
    local = local_run(job.spec)
    assert all(np.array_equal(net.params[k], local[k]) for k in local)  # the same bits as a local run
    figure = job.plot()
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    assert len(figure.axes[0].lines[0].get_ydata()) == 30
    assert client.job(job.id).record == job.refresh()
    assert job.id in [j.id for j in client.jobs(status="succeeded", limit=500)]
    assert repr(job).startswith(f"<Job {job.id[:8]} succeeded 30/30: mnist, hidden 8")


def test_wait_follows_the_event_stream(client: Client, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[dict[str, Any]] = []
    events = client.connection.events

    def spy(path: str, *args: Any) -> Iterator[dict[str, Any]]:
        for event in events(path, *args):
            seen.append(event)
            yield event

    monkeypatch.setattr(client.connection, "events", spy)
    client.submit(**SMALL).wait()
    assert seen[-1] == {"type": "status", "status": "succeeded"}
    assert any(event["type"] == "progress" for event in seen)
    bar = capsys.readouterr().err.strip().splitlines()[-1].split("\r")[-1]
    assert "30/30" in bar and "loss=" in bar, bar  # the text bar outside a notebook


def test_wait_polls_when_the_stream_drops(cluster: Any, proxy: Callable[..., Proxy]) -> None:
    relay = proxy(drop=lambda request: b"/events " in request)  # every event stream is cut at once
    with Client(relay.url, API_KEY) as client:
        job = client.submit(**SMALL).wait(progress=False)
    assert job.record["status"] == "succeeded" and relay.dropped >= 1


def test_wait_on_a_job_that_fails(client: Client) -> None:
    job = client.submit(**DIVERGING)
    with pytest.raises(JobFailed, match=r"failed: diverged: the loss became nan at iteration 1") as failed:
        job.wait(progress=False)
    assert failed.value.job is job and job.record["diverged"] is True
    assert job.wait(progress=False, check=False).record["status"] == "failed"
    assert np.isnan(job.history.loss[0])  # null in JSON, NaN in the History
    assert isinstance(job.plot(), Figure)
    with pytest.raises(Conflict, match="409 Job is failed: weights exist only for a succeeded job"):
        job.net  # noqa: B018


def test_wait_on_a_job_that_is_cancelled(client: Client) -> None:
    job = client.submit(**LONG)
    with pytest.raises(TimeoutError, match=f"job {job.id} is still (queued|running)"):
        job.wait(progress=False, timeout=0.5)
    with pytest.raises(Conflict, match="only finished jobs can be deleted"):
        job.delete()
    threading.Timer(0.5, job.cancel).start()  # from elsewhere, while wait() follows the stream
    with pytest.raises(JobFailed, match=f"job {job.id} cancelled"):
        job.wait(progress=False)
    assert job.record["status"] == "cancelled" and job.cancel().record["status"] == "cancelled"
    job.delete()
    with pytest.raises(NotFound, match="404 Job not found"):
        job.refresh()


def test_errors_carry_the_services_message(cluster: Any, client: Client) -> None:
    with pytest.raises(InvalidRequest, match=r"POST /v1/jobs: 422 model.hidden_size: .* over the limit") as bad:
        client.submit(hidden_size=5000, iters=1)
    assert bad.value.fields == ["model.hidden_size"] and bad.value.status == 422
    with pytest.raises(AuthenticationError, match="401 invalid API key; the key sent came from the api_key argument"):
        Client(cluster.url, "not-a-key").jobs()
    with pytest.raises(NotFound, match="404 Job not found"):
        client.job("0" * 32)
    with pytest.raises(NotFound, match="404 Sweep not found"):
        client.get_sweep("0" * 32)
    with pytest.raises(QuotaExceeded, match=r"429 these 30 jobs' results need .*MiB \(ZDL_MAX_STORED_MB_PER_KEY\)"):
        client.sweep({"seed": list(range(30))}, hidden_size=1024, iters=100_000)
    with pytest.raises(TypeError, match="unknown setting 'hiden_size'"):
        client.submit(hiden_size=8)
    with pytest.raises(TypeError, match="unknown sweep setting 'iters'"):
        client.sweep({"iters": [1, 2]})
    nowhere = Client(f"http://127.0.0.1:{free_port()}", API_KEY, retries=2, backoff_s=0.01)
    with pytest.raises(ServiceUnreachable, match="cannot reach the zdl service at .* tried 3 times"):
        nowhere.jobs()


@pytest.mark.slow
def test_a_submit_retried_after_the_api_dies_mid_request_makes_one_job(cluster: Any, client: Client,
                                                                       proxy: Callable[..., Proxy]) -> None:
    """The API creates the job and is SIGKILLed before its answer leaves: the client retries (while the API is
    restarted) with the same Idempotency-Key and gets that job back, never a second one."""
    restarted = threading.Event()

    def kill_api() -> None:
        faults.sigkill_group(cluster.api)
        threading.Thread(target=lambda: (cluster.replace_dead(), restarted.set()), daemon=True).start()

    relay = proxy(drop=lambda request: request.startswith(b"POST /v1/jobs "), on_drop=kill_api, once=True)
    before = {j.id for j in client.jobs(limit=1000)}
    try:
        with Client(relay.url, API_KEY, retries=8) as retrying:
            job = retrying.submit(**SMALL)
    finally:
        assert restarted.wait(60), "the API did not come back"
    assert relay.dropped == 1
    new = [j for j in client.jobs(limit=1000) if j.id not in before]
    assert [j.id for j in new] == [job.id]  # exactly one job, the one the first attempt made
    assert client.job(job.id).wait(progress=False).record["status"] == "succeeded"


def test_a_sweep_from_python(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    base = {k: v for k, v in SMALL.items() if k not in ("learning_rate", "seed")}
    sweep = client.sweep({"learning_rate": np.array([0.1, 1.0]), "seed": [np.int64(1), 2]}, name="py", **base)
    assert sweep.record["size"] == 4 and sweep.wait(progress=False).status() == "finished"
    frame = sweep.results()
    assert list(frame.columns[:3]) == ["learning_rate", "seed", "status"] and len(frame) == 4
    rows = sweep.results(frame=False)
    assert frame.to_dict("records") == rows and rows[0]["job_id"] == sweep.record["best"]
    assert sorted((r["learning_rate"], r["seed"]) for r in rows) == [(0.1, 1), (0.1, 2), (1.0, 1), (1.0, 2)]
    monkeypatch.setitem(__import__("sys").modules, "pandas", None)  # as if pandas were not installed
    assert sweep.results() == rows
    figure = sweep.plot()
    lines = figure.axes[0].lines
    assert len(lines) == 4 and max(line.get_linewidth() for line in lines) == lines[0].get_linewidth()
    assert lines[0].get_label().endswith("(best)")
    assert [j.id for j in sweep.jobs] == [r["job_id"] for r in rows] and sweep.best.id == rows[0]["job_id"]
    assert sweep.id in [s.id for s in client.sweeps()]
    sweep.delete()
    with pytest.raises(NotFound):
        sweep.refresh()


def test_a_sweep_cancelled_from_python(client: Client) -> None:
    sweep = client.sweep(runs=[{"seed": 1}, {"seed": 2}, {"seed": 3}], **{k: v for k, v in LONG.items() if k != "seed"})
    with pytest.raises(Conflict, match="cancel it first"):
        sweep.delete()
    assert sweep.cancel().wait(progress=False, timeout=10).record["counts"]["cancelled"] == 3
    sweep.delete()


# --- a TCP relay in front of the API that can cut a connection ----------------------------------------


class Proxy:
    """Relays 127.0.0.1:<port> to the API. A request for which `drop(request bytes)` is true is forwarded, its
    answer read from the API and thrown away, `on_drop()` called, and the client's connection closed: to the
    client, the connection broke mid-request (after the service acted on it)."""

    def __init__(self, upstream: int, drop: Callable[[bytes], bool], on_drop: Callable[[], None] | None = None,
                 once: bool = False) -> None:
        self.upstream, self.drop, self.on_drop, self.once = upstream, drop, on_drop, once
        self.dropped = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(downstream,), daemon=True).start()

    def _serve(self, downstream: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=30)
        except OSError:  # the API is down: the client sees its connection closed
            downstream.close()
            return
        cut = threading.Event()
        threading.Thread(target=self._answers, args=(upstream, downstream, cut), daemon=True).start()
        with downstream, upstream:
            while chunk := _recv(downstream):
                if self.drop(chunk) and not (self.once and self.dropped):
                    self.dropped += 1
                    cut.set()
                upstream.sendall(chunk)

    def _answers(self, upstream: socket.socket, downstream: socket.socket, cut: threading.Event) -> None:
        while chunk := _recv(upstream):
            if cut.is_set():
                if self.on_drop is not None:
                    self.on_drop()
                break
            try:
                downstream.sendall(chunk)
            except OSError:
                break
        for sock in (downstream, upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def proxy(cluster: Any) -> Iterator[Callable[..., Proxy]]:
    made: list[Proxy] = []

    def make(**options: Any) -> Proxy:
        made.append(Proxy(cluster.port, **options))
        return made[-1]

    yield make
    for relay in made:
        relay.close()
