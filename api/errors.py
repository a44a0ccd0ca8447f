"""Error responses: always JSON with a one-line `detail`; never a stack trace."""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)


def _field(loc: tuple[int | str, ...]) -> str:
    """("body", "model", "hidden_size") -> "model.hidden_size"; query and header names stay as they are."""
    parts = [str(p) for p in loc]
    return ".".join(parts[1:] if parts and parts[0] == "body" and len(parts) > 1 else parts)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422: `detail` names every bad field and says what is wrong with it."""
    errors = [{"field": _field(tuple(e["loc"])), "message": e["msg"], "type": e["type"]} for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


async def redis_error(request: Request, exc: redis.RedisError) -> JSONResponse:
    log.warning("%s %s: Redis error: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": f"the job store (Redis) is unavailable: {exc}"}, status_code=503)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return JSONResponse({"detail": f"internal server error ({type(exc).__name__})"}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(redis.RedisError, redis_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected_error)
