"""The client's key goes to its own service only, and a key sent over plain http off this machine is warned about."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator

import pytest

from zdl.client import connection
from zdl.client.connection import Connection


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers {} to every GET and notes the Authorization header it was sent."""

    seen: list[str | None] = []

    def do_GET(self) -> None:
        Recorder.seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[str, str]]:
    """Two local HTTP servers: the client's service, and another origin."""
    started = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder) for _ in range(2)]
    for server in started:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    Recorder.seen = []
    yield tuple(f"http://127.0.0.1:{s.server_address[1]}" for s in started)  # type: ignore[misc]
    for server in started:
        server.shutdown()
        server.server_close()


def test_the_key_is_never_sent_to_another_origin(servers: tuple[str, str]) -> None:
    own, other = servers
    client = Connection(own, api_key="secret-key-1", retries=0)
    assert client.json("GET", "/v1/jobs") == {} and client.json("GET", f"{own}/v1/jobs") == {}
    with pytest.raises(ValueError, match="refusing to send this client's API key to http://127.0.0.1"):
        client.json("GET", f"{other}/v1/jobs")
    with pytest.raises(ValueError, match="refusing"):
        list(client.events(f"{other}/v1/jobs/x/events"))
    assert Recorder.seen == ["Bearer secret-key-1", "Bearer secret-key-1"]  # the other server saw nothing
    client.close()


def test_plain_http_off_this_machine_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    connection._warned_urls.clear()
    with caplog.at_level(logging.WARNING, logger="zdl.client.connection"):
        for _ in range(2):
            Connection("http://zdl.example:8000", api_key="k").close()
        Connection("https://zdl.example", api_key="k").close()
        Connection("http://127.0.0.1:8000", api_key="k").close()
        Connection("http://zdl.example:9000").close()  # no key, nothing to read on the way
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "http://zdl.example:8000 over plain http" in warnings[0]
