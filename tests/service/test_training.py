"""Jobs over HTTP end to end: the weights served are bit-identical to a local zdl run with the same settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import redis

from worker.cluster.launcher import LocalCluster
from zdl.io import load_weights
from zdl.train import TrainConfig, Trainer


def local_weights(data: Any, job: dict[str, Any]) -> dict[str, np.ndarray]:
    """An independent local run: zdl's own Trainer with its in-process gradient."""
    spec = job["spec"]
    config = TrainConfig(hidden_size=spec["model"]["hidden_size"], weight_init_std=spec["model"]["weight_init_std"],
                         gradient=spec["gradient"]["method"], **spec["training"])
    trainer = Trainer(data, config, output_size=10)
    trainer.run()
    return trainer.net.params


def served_weights(api: Any, job: dict[str, Any]) -> dict[str, np.ndarray]:
    response = api.get(job["links"]["weights"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    return load_weights(response.content).params


def assert_bit_identical(served: dict[str, np.ndarray], local: dict[str, np.ndarray]) -> None:
    for key in ("W1", "b1", "W2", "b2"):
        assert served[key].dtype == local[key].dtype and served[key].shape == local[key].shape, key
        difference = np.abs(served[key] - local[key]).max()
        assert np.array_equal(served[key], local[key]), f"{key} differs: max |diff| {difference}"


@pytest.mark.parametrize("workers", [1, 2])
def test_weights_bit_identical_to_local_run(workers: int, blocks, submit, wait_for, api, local_data,
                                            cluster: LocalCluster) -> None:
    blocks(workers)
    job = wait_for(submit()["id"])
    assert job["status"] == "succeeded", job
    assert job["blocks"] == workers  # "auto": one group per live block worker
    assert job["progress"]["iteration"] == job["progress"]["total"] == 30
    assert_bit_identical(served_weights(api, job), local_weights(local_data, job))
    if workers == 2:  # a gang of 2 replicas on this one machine: its parts went through shared memory
        steps = redis.Redis.from_url(cluster.settings.step_url)
        handshakes = list(steps.scan_iter(f"{cluster.settings.key_prefix}:gang:{job['id']}:*:shm"))
        assert handshakes and all(steps.hget(key, "r1") == b"1" for key in handshakes)


def test_more_groups_than_workers(submit, wait_for, api, local_data) -> None:
    job = wait_for(submit(gradient={"blocks": 5})["id"])
    assert job["status"] == "succeeded" and job["blocks"] == 5
    assert_bit_identical(served_weights(api, job), local_weights(local_data, job))


@pytest.mark.parametrize("method", ["backprop", "numerical-reference"])
def test_other_methods(method: str, submit, wait_for, api, local_data) -> None:
    job = wait_for(submit(model={"hidden_size": 3}, training={"iters": 3, "batch_size": 10},
                          gradient={"method": method})["id"])
    assert job["status"] == "succeeded", job
    assert job["blocks"] == (0 if method == "backprop" else 2)
    assert_bit_identical(served_weights(api, job), local_weights(local_data, job))


def test_history_matches_the_local_run(submit, wait_for, api, local_data) -> None:
    job = wait_for(submit(training={"iters": 25, "batch_size": 50})["id"])
    history = api.get(job["links"]["history"]).json()
    spec = job["spec"]
    trainer = Trainer(local_data, TrainConfig(hidden_size=8, gradient="numerical", **spec["training"]))
    local = trainer.run()
    assert history["loss"] == local.loss  # floats survive JSON exactly
    assert history["epoch_iters"] == local.epoch_iters == [0, 4, 8, 12, 16, 20, 24]  # 200 images / 50 per batch
    assert history["train_acc"] == local.train_acc and history["test_acc"] == local.test_acc
    assert history["config"]["dataset"] == "mnist" and history["config"]["blocks"] == 2
    assert job["latest"] == {"loss": local.loss[-1], "train_acc": local.train_acc[-1], "test_acc": local.test_acc[-1]}
    assert job["timings"]["fanout_overhead_ms"] > 0 and job["timings"]["finished_at"] is not None


def test_missing_dataset_fails_with_a_readable_error(job_without_data) -> None:
    job = job_without_data()
    assert job["status"] == "failed"
    assert "mnist" in job["error"] and "Traceback" not in job["error"]
    assert job["progress"]["iteration"] == 0


@pytest.fixture(scope="module")
def one_redis_cluster(service_root, service_env, fast_settings):
    with LocalCluster(service_root / "one-redis", block_workers=2, port=0, settings=fast_settings, persist=True,
                      step_redis=False, env=service_env) as running:
        yield running


@pytest.mark.redis
class TestOneRedisForEverything:
    """Without a step Redis (ZDL_STEP_REDIS_URL empty) step data goes through the main Redis, written by
    scripts that keep it out of its append-only file; jobs come out the same."""

    @pytest.fixture
    def cluster(self, one_redis_cluster):  # the fixtures of the session's cluster (api, submit...) use this one
        return one_redis_cluster

    def test_bit_identical_and_no_step_arrays_on_disk(self, cluster, submit, wait_for, api, local_data) -> None:
        assert not cluster.settings.step_redis_url and cluster.step_redis is None
        job = wait_for(submit(gradient={"blocks": 3})["id"])
        assert job["status"] == "succeeded", job
        served = served_weights(api, job)
        assert_bit_identical(served, local_weights(local_data, job))
        aof = b"".join(path.read_bytes() for path in (cluster.state_dir / "redis").rglob("*.aof"))
        assert job["id"].encode() in aof  # the job's record is there
        # 30 steps of parameters written to the log would be 30 x W1's bytes at least
        assert len(aof) < 10 * served["W1"].nbytes, len(aof)
