"""Redis servers that speak TLS only, as a first machine publishes them to the others (docs/operations.md, "Three
machines"): certificates made here with the openssl CLI, and each server started with the TLS options of the
document's compose override, but with no plain port at all (`--port 0`)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import yaml

from tests.service.doc_blocks import block
from tests.service.doc_shell import OPERATIONS
from worker.cluster import processes
from worker.cluster.processes import Managed

#: The compose override's heading in docs/operations.md.
OVERRIDE = "Publish the Redis servers behind TLS"
#: Query parameters that make redis-py (and Celery's broker connection) verify the server against this CA.
VERIFIED = "ssl_cert_reqs=required&ssl_ca_certs={}"


def tls_tools_missing() -> str | None:
    """What this machine lacks to run TLS-only Redis servers and check them, or None."""
    for tool, package in (("redis-server", "redis-server"), ("redis-cli", "redis-tools"), ("openssl", "openssl")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on the PATH (Debian: apt-get install {package})"
    return None


def openssl(directory: Path, *args: str) -> None:
    done = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")


def make_certificates(directory: Path, addresses: Sequence[str]) -> Path:
    """A CA (`ca.crt`) and a certificate for Redis signed by it (`redis.crt`, `redis.key`) that names `addresses`
    (IP addresses) in its subjectAltName, which clients check; all in `directory`, which is returned."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(directory, "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=zdl test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl(directory, "req", "-new", *key, "-keyout", "redis.key", "-out", "redis.csr", "-subj", "/CN=zdl-main")
    (directory / "redis.ext").write_text(f"subjectAltName={','.join(f'IP:{a}' for a in addresses)}\n"
                                         "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                         "extendedKeyUsage=serverAuth\n")
    openssl(directory, "x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "1",
            "-days", "2", "-extfile", "redis.ext", "-out", "redis.crt")
    return directory


def server_args(service: str, tls_port: int, tls_dir: Path) -> list[str]:
    """The override's arguments for `service` with no plain port (`--port 0`), `--tls-port tls_port`, and the files
    of tls_dir in place of /tls."""
    override = yaml.safe_load(block(OPERATIONS, OVERRIDE, "yaml"))["services"]
    args = [str(arg) for arg in override[service]["command"]]
    for option, value in (("--port", "0"), ("--tls-port", str(tls_port))):
        assert option in args, f"the override gives {service} no {option}: {args}"
        args[args.index(option) + 1] = value
    return [str(tls_dir / arg.removeprefix("/tls/")) if arg.startswith("/tls/") else arg for arg in args]


def start_tls_redis(service: str, tls_port: int, tls_dir: Path, state_dir: Path, acl_file: Path,
                    bind: Sequence[str]) -> Managed:
    """`service`'s redis-server (redis, redis-steps or redis-broker) on `bind`, TLS only, its users from acl_file;
    its files in <state_dir>/<service>, its output in <state_dir>/logs/<service>.log."""
    data = state_dir / service
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    binary = shutil.which("redis-server") or "redis-server"
    args = [binary, "--aclfile", str(acl_file), "--dir", str(data), "--bind", *bind, "--protected-mode", "yes",
            *server_args(service, tls_port, tls_dir)]
    return processes.spawn(service, args, state_dir / "logs")


def rediss_url(password: str, host: str, port: int, ca_file: Path) -> str:
    """The application user's URL of a TLS-only server, verified against `ca_file`."""
    return f"rediss://default:{password}@{host}:{port}/0?{VERIFIED.format(ca_file)}"
