"""Backups and restores of the main Redis (job records, histories, weights, queues): `zdl backup`, `zdl restore`.

A backup is the server's own snapshot, an RDB file, taken the way a replica (or `redis-cli --rdb`) takes it:
the operator's Redis user (worker/cluster/redis_auth.py) sends `SYNC` and the server forks, writes a point-in-time
snapshot and streams it here; the server keeps serving meanwhile, and the application's user could not do
this. The file is checked (RDB magic) and written atomically, readable by its owner only.

A restore writes that file as the append-only file of a Redis that has not started yet (a fresh
`zdl cluster up --state-dir`, or compose's empty `redis-data` volume): an append-only file may begin with an
RDB image, so the server loads the snapshot when it starts and keeps appending to it from there. Nothing
running is stopped or overwritten: a directory that already holds an append-only file is refused. A job that
was running at the backup resumes from its last checkpoint (its lease has lapsed: worker/recovery.py).

The step Redis is not backed up: it holds only steps in flight, which a resumed job computes again.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from worker.cluster.redis_auth import OPERATOR_USER
from zdl.io import atomic_write_bytes

#: An RDB file (and a snapshot sent to a replica) begins with these bytes and a four-digit version.
RDB_MAGIC = b"REDIS"
#: The append-only file's name in a Redis data directory (Redis's default `appendfilename`): Redis 6 loads it,
#: Redis 7 moves it into its `appendonlydir` at the first start and loads it from there.
AOF_NAME = "appendonly.aof"
AOF_DIR_NAME = "appendonlydir"
OPERATOR_PASSWORD_ENV = "ZDL_REDIS_OPERATOR_PASSWORD"
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class RedisAddress:
    """Where the main Redis listens, and whether through TLS (rediss://)."""

    host: str
    port: int
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise BackupError(f"a backup needs a redis:// or rediss:// URL with a host, got {redact(url)!r}")
        return cls(unquote(parts.hostname), parts.port or 6379, parts.scheme == "rediss")


def redact(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def command(*args: str) -> bytes:
    """One command in the Redis protocol (RESP): an array of bulk strings."""
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Reader:
    """Reads lines and raw bytes from a socket, with a buffer of what came in beyond the last read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def _fill(self) -> None:
        chunk = self.sock.recv(CHUNK)
        if not chunk:
            raise BackupError("the Redis server closed the connection in the middle of the snapshot")
        self.buffer += chunk

    def line(self) -> bytes:
        """The next line without its CRLF, skipping the bare newlines a master sends while it prepares."""
        while True:
            self.buffer = self.buffer.lstrip(b"\n")
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
                return line
            self._fill()

    def take(self, limit: int) -> bytes:
        """Up to `limit` bytes: what is buffered, else what the next recv gives."""
        if not self.buffer:
            self._fill()
        data, self.buffer = self.buffer[:limit], self.buffer[limit:]
        return data


def _expect_ok(reader: _Reader, what: str) -> None:
    reply = reader.line()
    if not reply.startswith(b"+"):
        raise BackupError(f"{what} refused by Redis: {reply.decode(errors='replace')[:200]}")


def _open(address: RedisAddress, timeout_s: float) -> socket.socket:
    sock = socket.create_connection((address.host, address.port), timeout=timeout_s)
    if address.tls:  # the CA comes from the system, or SSL_CERT_FILE
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=address.host)
    return sock


def snapshot(address: RedisAddress, password: str, out: Path, *, user: str = OPERATOR_USER,
             timeout_s: float = 120.0) -> int:
    """Take a point-in-time snapshot of the server at `address` into `out` (atomically, mode 0600) as the
    operator's user; returns its size in bytes."""
    with _open(address, timeout_s) as sock:
        reader = _Reader(sock)
        sock.sendall(command("AUTH", user, password))
        _expect_ok(reader, f"AUTH as {user!r}")
        # A snapshot only, no stream of writes after it (Redis before 7 does not know rdb-only: the stream that
        # follows is never read), and sent from memory, not through a dump.rdb left in the server's directory.
        sock.sendall(command("REPLCONF", "rdb-only", "1") + command("REPLCONF", "capa", "eof"))
        reader.line(), reader.line()
        sock.sendall(command("SYNC"))
        header = reader.line()
        if header.startswith(b"-"):
            raise BackupError(f"SYNC refused by Redis: {header.decode(errors='replace')[:200]} (a backup needs the "
                              f"operator's user, `{OPERATOR_USER}`, and its password)")
        if header.startswith(b"$EOF:"):
            data = _read_until_mark(reader, header[5:])
        elif header.startswith(b"$"):
            data = _read_exactly(reader, int(header[1:]))
        else:
            raise BackupError(f"unexpected reply to SYNC: {header[:80]!r}")
    if not data.startswith(RDB_MAGIC):
        raise BackupError("the server's snapshot is not an RDB file")
    write_private(out, data)
    return len(data)


def _read_exactly(reader: _Reader, size: int) -> bytes:
    parts, left = [], size
    while left:
        part = reader.take(left)
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read_until_mark(reader: _Reader, mark: bytes) -> bytes:
    """A diskless snapshot: the data ends with the 40-byte mark announced in its header."""
    data = bytearray()
    while not data.endswith(mark):
        data += reader.take(CHUNK)
    return bytes(data[:-len(mark)])


def write_private(path: Path, data: bytes) -> None:
    """`data` in `path`, atomically, readable by this user only (the temporary file is made 0600)."""
    atomic_write_bytes(path, data)


def restore_into(backup: Path, redis_dir: Path) -> Path:
    """Put the snapshot `backup` where a Redis that will start with `--dir redis_dir --appendonly yes` loads it;
    returns the file written. Refuses a directory that already holds an append-only file (a restore never
    overwrites data). Run as root (into a container's volume), the file gets the directory's owner."""
    data = backup.read_bytes()
    if not data.startswith(RDB_MAGIC):
        raise BackupError(f"{backup} is not a backup made by `zdl backup` (no RDB header)")
    for existing in (redis_dir / AOF_NAME, redis_dir / AOF_DIR_NAME):
        if existing.exists():
            raise BackupError(f"{existing} exists: restore only into a cluster that has not started yet (a new "
                              f"--state-dir, or an empty Redis volume); move the old data away first")
    redis_dir.mkdir(parents=True, exist_ok=True)
    target = redis_dir / AOF_NAME
    write_private(target, data)
    owner = redis_dir.stat()
    if os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0):
        os.chown(target, owner.st_uid, owner.st_gid)
    return target
