"""The cancel flag, read one way everywhere: cancelling a job sets its record's `cancel_requested` to 1.

Each part of a running job looks at it where it waits anyway: the coordinator with each progress batch,
the fan-out gradient and a gang's coordinator while they wait for the workers, a block loop and a gang's
replica 0 at each look at their turn (`worker.scheduling.turns`).
"""

from __future__ import annotations

import redis

#: The job record's field that a cancel sets.
CANCEL_FIELD = "cancel_requested"


def cancelled(flag: object) -> bool:
    """Whether a read of the record's CANCEL_FIELD says the job is to stop."""
    return flag == b"1"


def cancel_requested(client: redis.Redis, record_key: str) -> bool:
    """Read the job record's cancel flag now (one HGET)."""
    return cancelled(client.hget(record_key, CANCEL_FIELD))
