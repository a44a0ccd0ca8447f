"""A Python client of the zdl training service, for notebooks and scripts: jobs, sweeps, results as zdl objects.

It speaks HTTP only (httpx), so the library still imports nothing of the service. See `Client`.
"""

from zdl.client.client import Client
from zdl.client.errors import (
    AuthenticationError,
    ClientError,
    Conflict,
    InvalidRequest,
    JobFailed,
    NotFound,
    QuotaExceeded,
    ServiceError,
    ServiceUnreachable,
)
from zdl.client.jobs import Job
from zdl.client.sweeps import Sweep

__all__ = [
    "AuthenticationError",
    "Client",
    "ClientError",
    "Conflict",
    "InvalidRequest",
    "Job",
    "JobFailed",
    "NotFound",
    "QuotaExceeded",
    "ServiceError",
    "ServiceUnreachable",
    "Sweep",
]
