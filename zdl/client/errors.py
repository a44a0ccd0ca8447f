"""What can go wrong talking to a zdl service, as exceptions that carry the service's own message.

A `ServiceError` reads like the service's answer: `POST /v1/jobs: 422 model.hidden_size: Input should be
greater than or equal to 1`. Each status a caller may want to handle has its own class.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Anything `zdl.client` raises on purpose."""


class ServiceUnreachable(ClientError):
    """No answer from the service, even after retrying (it is not running, or not at that address)."""


class ServiceError(ClientError):
    """The service answered with an error: `status`, its one-line `detail`, per-field `errors` (422) and the
    `request_id` that finds a server-side failure in the service's log."""

    def __init__(self, method: str, path: str, status: int, detail: str, errors: list[dict[str, Any]] | None = None,
                 request_id: str | None = None, hint: str = "") -> None:
        self.method, self.path, self.status, self.detail = method, path, status, detail
        self.errors = errors or []
        self.request_id = request_id
        super().__init__(f"{method} {path}: {status} {detail}" + (f"; {hint}" if hint else ""))


class AuthenticationError(ServiceError):
    """401: the API key is missing or not one of the service's."""


class NotFound(ServiceError):
    """404: no such job or sweep for this key (another key's look the same as missing ones)."""


class Conflict(ServiceError):
    """409: e.g. weights of a job that has not succeeded, or deleting a job that still runs."""


class InvalidRequest(ServiceError):
    """422: the request names a bad field; `fields` lists them (e.g. `model.hidden_size`)."""

    @property
    def fields(self) -> list[str]:
        return [str(e.get("field")) for e in self.errors]


class QuotaExceeded(ServiceError):
    """429: this key is at one of its limits (active jobs, stored jobs, stored bytes); the message names it."""


class JobFailed(ClientError):
    """A job ended without succeeding (failed, diverged, or cancelled); `job` is its last state."""

    def __init__(self, job: Any) -> None:
        self.job = job
        record = job.record
        super().__init__(f"job {job.id} {record['status']}" + (f": {record['error']}" if record.get("error") else ""))


ERRORS_BY_STATUS: dict[int, type[ServiceError]] = {
    401: AuthenticationError, 404: NotFound, 409: Conflict, 422: InvalidRequest, 429: QuotaExceeded,
}
