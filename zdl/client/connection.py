"""HTTP to a zdl service: where it is, which key to send, retries, and errors as exceptions.

Every call the client makes is safe to repeat: reads, cancels and deletes are idempotent, and a submit
carries an `Idempotency-Key`, so a submit retried after a dropped connection returns the job the first
attempt made instead of making a second one. So a dropped connection, a timeout or a 502/503/504 (the
service's store briefly away, a proxy in front of a restarting API) is retried with exponential backoff.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx

from zdl.client.errors import ERRORS_BY_STATUS, ServiceError, ServiceUnreachable
from zdl.network import is_loopback
from zdl.paths import default_state_dir, saved_api_key, saved_url

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
#: Status codes that mean "try again shortly" rather than "this request is wrong".
RETRY_STATUSES = frozenset({502, 503, 504})
#: How long to wait for an event (the service pings every 15 s) before falling back to polling.
EVENT_READ_TIMEOUT_S = 45.0


def resolve_url(url: str | None) -> str:
    """The service's URL: the argument, $ZDL_URL, the URL `zdl cluster up` saved in its state dir, or DEFAULT_URL."""
    return (url or os.environ.get("ZDL_URL") or saved_url() or DEFAULT_URL).rstrip("/")


def resolve_key(api_key: str | None) -> tuple[str | None, str]:
    """The key to send and where it came from: the argument, $ZDL_API_KEY, the key `zdl cluster up` saved,
    or none (a service without keys answers this machine only)."""
    if api_key:
        return api_key, "the api_key argument"
    if os.environ.get("ZDL_API_KEY"):
        return os.environ["ZDL_API_KEY"], "$ZDL_API_KEY"
    saved = saved_api_key()
    if saved:
        return saved, f"the key file `zdl cluster up` saved in {default_state_dir()}"
    return None, "nowhere (no api_key argument, no $ZDL_API_KEY, no key saved by `zdl cluster up`)"


class Connection:
    """One service's address and key, an HTTP connection pool, and the retry policy.

    retries: how many times a failed attempt is repeated; backoff_s: the first wait, doubled each time
    (0.25 s and 5 retries wait at most 7.75 s in all: long enough for an API to restart).
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout_s: float = 30.0,
                 retries: int = 5, backoff_s: float = 0.25) -> None:
        self.url = resolve_url(url)
        key, self.key_source = resolve_key(api_key)
        self.retries, self.backoff_s = retries, backoff_s
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout_s, read=60.0))
        if key:
            warn_if_plain_http(self.url)

    def on_this_service(self, path: str) -> str:
        """`path` if it is a path, or an absolute URL of this service's own origin; anything else (a link to
        another host, scheme or port, from a response or a caller) is refused: the key goes nowhere else."""
        target = httpx.URL(path)
        if target.is_relative_url:
            return path
        base = self.http.base_url
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise ValueError(f"refusing to send this client's API key to {target.scheme}://{target.netloc.decode()}:"
                             f" it talks to {self.url} only")
        return path

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, json_body: Any = None, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None) -> httpx.Response:
        """The response to a 2xx, after retries; raises a ServiceError for an error answer and
        ServiceUnreachable when every attempt failed to get one. A DELETE whose retry finds nothing to
        delete succeeded the first time (its answer was lost): that 404 is returned as success."""
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.http.request(method, self.on_this_service(path), json=json_body, headers=headers,
                                             params=params)
            except httpx.TransportError as exc:
                if last:
                    raise self.unreachable(exc) from None
                self._pause(attempt)
                continue
            if response.status_code in RETRY_STATUSES and not last:
                self._pause(attempt)
                continue
            if method == "DELETE" and response.status_code == 404 and attempt > 0:
                return response
            self.check(response)
            return response
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def events(self, path: str, read_timeout_s: float = EVENT_READ_TIMEOUT_S) -> Iterator[dict[str, Any]]:
        """The JSON bodies of a Server-Sent Events stream (pings skipped), until the server ends it.
        Raises httpx.TransportError if the stream drops or is silent for read_timeout_s (the caller polls then)."""
        timeout = httpx.Timeout(self.http.timeout.connect or 30.0, read=read_timeout_s)
        with self.http.stream("GET", self.on_this_service(path), timeout=timeout,
                              headers={"Accept": "text/event-stream"}) as response:
            if response.is_error:
                response.read()
                self.check(response)
            data: list[str] = []
            for line in response.iter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    yield json.loads("\n".join(data))
                    data = []

    def check(self, response: httpx.Response) -> None:
        """Raise the ServiceError for an error response (its class by status: AuthenticationError for 401...)."""
        if not response.is_error:
            return
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        detail = str(body.get("detail") or response.text or response.reason_phrase)
        hint = f"the key sent came from {self.key_source}" if response.status_code == 401 else ""
        kind = ERRORS_BY_STATUS.get(response.status_code, ServiceError)
        raise kind(response.request.method, response.request.url.path, response.status_code, detail,
                   body.get("errors"), body.get("request_id"), hint)

    def unreachable(self, exc: Exception) -> ServiceUnreachable:
        return ServiceUnreachable(f"cannot reach the zdl service at {self.url} ({exc or type(exc).__name__}; tried "
                                  f"{self.retries + 1} times); start one with `zdl cluster up`, or give its address "
                                  "(url=..., $ZDL_URL or --url)")

    def _pause(self, attempt: int) -> None:
        time.sleep(min(self.backoff_s * 2**attempt, 8.0))


_warned_urls: set[str] = set()


def warn_if_plain_http(url: str) -> None:
    """Warn (once per URL and process) that a key sent over plain http to another machine can be read on the way."""
    parsed = httpx.URL(url)
    if parsed.scheme != "http" or is_loopback(parsed.host) or url in _warned_urls:
        return
    _warned_urls.add(url)
    log.warning("sending the API key to %s over plain http: anyone on the network path can read it; use https "
                "(a TLS proxy in front of the service)", url)

