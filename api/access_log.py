"""The API's access log and request ids: one structured line per request, never a query string or a key.

Each request gets an id (the client's `X-Request-ID` when it is a short token, else a new one), sent back in
the response's `X-Request-ID` and put on every log line written while the request is served
(worker/telemetry/structured_log.py), and kept in the request's state for the error handlers (api/errors.py),
so the id a failed response shows finds its log lines. The access line holds the method, the path without its
query string, the status, the duration and the caller's key name (set by api/auth.py once the key is known);
the Authorization header is never read here.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.telemetry import structured_log

log = logging.getLogger("zdl.access")
REQUEST_ID_HEADER = "X-Request-ID"
_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")


class AccessLog:
    """ASGI middleware: request id in, request id out, one `zdl.access` line per HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        rid = given if _TOKEN.fullmatch(given) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        token = structured_log.request_id.set(rid)
        status, began = 500, time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            state = scope.get("state") or {}
            log.info("%s %s %d", scope["method"], scope["path"], status,
                     extra={"key": state.get("key_name"), "status": status,
                            "duration_ms": round(1000 * (time.perf_counter() - began), 1)})
            structured_log.request_id.reset(token)
