"""The Celery broker's connection checks a TLS Redis's certificate, as every other Redis connection of the service
does: kombu on its own connects to a `rediss://` URL without `ssl_*` parameters without checking it (it warns).

One TLS-only Redis on 127.0.0.1 (tests/service/tls_redis.py), its certificate signed by a CA made here; the broker
connection of the Celery app a worker runs (`worker.celery_app.app.create_app`) is opened and sent a PING.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kombu.exceptions import OperationalError

from tests.service.tls_redis import make_certificates, rediss_url, start_tls_redis, tls_tools_missing
from worker.celery_app.app import create_app
from worker.cluster import processes
from worker.cluster.launcher import write_secret
from worker.cluster.redis_auth import acl_file_text
from worker.settings import Settings


@dataclass(frozen=True)
class TlsRedis:
    port: int
    password: str
    ca_file: Path  # the CA that signed the server's certificate
    other_ca_file: Path  # a CA that did not


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    if (missing := tls_tools_missing()) is not None:
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("tls-redis")
    tls_dir, other = make_certificates(root / "tls", ["127.0.0.1"]), make_certificates(root / "other", ["127.0.0.1"])
    password, port = secrets.token_hex(16), processes.free_port()
    server = start_tls_redis("redis-broker", port, tls_dir, root, write_secret(root / "users.acl",
                                                                               acl_file_text(password)), ["127.0.0.1"])
    try:
        url = rediss_url(password, "127.0.0.1", port, tls_dir / "ca.crt")
        processes.wait_until(lambda: processes.redis_ready(url), 60, "the TLS Redis", [server])
        yield TlsRedis(port, password, tls_dir / "ca.crt", other / "ca.crt")
    finally:
        processes.stop([server])


def broker_ping(url: str) -> bool:
    """PING through the broker connection of the Celery app for a worker whose ZDL_BROKER_URL is `url`."""
    app = create_app(Settings(broker_url=url))
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)  # a refusal fails at once, not after kombu's retries
        return bool(connection.default_channel.client.ping())


def test_the_broker_connects_through_the_ca_its_url_names(tls_redis: TlsRedis) -> None:
    assert broker_ping(rediss_url(tls_redis.password, "127.0.0.1", tls_redis.port, tls_redis.ca_file))


def test_the_broker_refuses_a_certificate_another_ca_signed(tls_redis: TlsRedis) -> None:
    with pytest.raises(OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        broker_ping(rediss_url(tls_redis.password, "127.0.0.1", tls_redis.port, tls_redis.other_ca_file))


def test_a_broker_url_without_a_ca_checks_the_certificate_against_the_systems_cas(tls_redis: TlsRedis) -> None:
    """No system CA signed this server's certificate: refused, where kombu alone would not have checked it."""
    with pytest.raises(OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        broker_ping(f"rediss://default:{tls_redis.password}@127.0.0.1:{tls_redis.port}/0")
