"""Error responses: always JSON with a one-line `detail`; never a stack trace, a Redis message, a host path
or a host name.

Every response carries `X-Request-ID` (the client's, if it sent a short plain one, else a new one), and a
server-side failure's body carries it too: the log line with the full detail has the same id, so an
operator can find what a user saw without the user ever seeing internals.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.access_log import REQUEST_ID_HEADER
from worker.state.headroom import StoreFull

log = logging.getLogger(__name__)



def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


def _field(loc: tuple[int | str, ...]) -> str:
    """("body", "model", "hidden_size") -> "model.hidden_size"; query and header names stay as they are."""
    parts = [str(p) for p in loc]
    return ".".join(parts[1:] if parts and parts[0] == "body" and len(parts) > 1 else parts)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422: `detail` names every bad field and says what is wrong with it."""
    errors = [{"field": _field(tuple(e["loc"])), "message": e["msg"], "type": e["type"]} for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


def server_side(request: Request, status: int, detail: str) -> JSONResponse:
    """A 5xx body: what the user may know, and the request id that finds the rest in the log."""
    rid = request_id(request)
    return JSONResponse({"detail": f"{detail} (request id {rid})", "request_id": rid}, status_code=status,
                        headers={REQUEST_ID_HEADER: rid})  # (a 500 is sent from outside the AccessLog middleware)


async def redis_error(request: Request, exc: redis.RedisError) -> JSONResponse:
    log.warning("request %s: %s %s: Redis error: %r", request_id(request), request.method, request.url.path, exc)
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return server_side(request, 507, "the job store is full: nothing was stored; delete finished jobs "
                                         "(DELETE /v1/jobs/{id}) or ask the operator for room")
    return server_side(request, 503, "the job store is unavailable; try again in a few seconds")


async def store_full(request: Request, exc: StoreFull) -> JSONResponse:
    """507: the job store is past its high-water mark; the detail says how much room there is, how to free it."""
    log.warning("request %s: %s %s: %s", request_id(request), request.method, request.url.path, exc)
    return server_side(request, 507, str(exc))


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request %s: %s %s failed", request_id(request), request.method, request.url.path)
    return server_side(request, 500, "internal server error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(redis.RedisError, redis_error)  # type: ignore[arg-type]
    app.add_exception_handler(StoreFull, store_full)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected_error)
