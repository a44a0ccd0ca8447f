"""When a coordinator stops waiting for work it sent: a block group, a block loop, or a gang's replica.

A coordinator lists what it started in a hash, each entry "queued:<unix time>" until a worker takes it and
writes its identity instead (`<hostname>#<instance>`, worker/scheduling/heartbeat.py). An entry is lost when
the heartbeat of the process that took it has stopped (`taken_by_lost`: also when the worker was started again
under the same name, since the new process is another instance), or when it has stayed queued longer than
the patience: `block_timeout_s`, or one heartbeat TTL once something has waited that long while a block
worker died recently (a worker killed after taking a Celery message, but before saying so, leaves such an
entry behind; replacing one that was only slow is harmless, the first answer wins).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

import redis

from worker.scheduling.heartbeat import alive_instances, recently_lost_workers
from worker.settings import Settings

K = TypeVar("K")

#: The value of a listed entry whose Celery message is sent but not yet started: "queued:<unix time>".
QUEUED = "queued:"


#: The value of gang replica 0's entry once its task has returned (worker/gang/replica.py): neither queued nor
#: taken; whatever it had to say is in the turn's reports.
ENDED = "ended"


def queued(wall: float) -> str:
    """The value that lists an entry as queued since `wall` (unix time)."""
    return f"{QUEUED}{wall}"


def queued_ages(listed: Mapping[K, str], wall: float) -> dict[K, float]:
    """How long (seconds, at unix time `wall`) each entry still queued has been so."""
    return {key: wall - float(value[len(QUEUED):]) for key, value in listed.items() if value.startswith(QUEUED)}


def patience(client: redis.Redis, settings: Settings, waits: Iterable[float]) -> float:
    """How long an unclaimed or queued entry may wait, given how long each has waited (see the module)."""
    if any(wait > settings.heartbeat_ttl_s for wait in waits) and \
            recently_lost_workers(client, settings, settings.blocks_queue):
        return settings.heartbeat_ttl_s
    return settings.block_timeout_s


def live_takers(client: redis.Redis, settings: Settings) -> set[str]:
    """The block worker processes alive now, as they write themselves into the work they take."""
    return alive_instances(client, settings, settings.blocks_queue)


def taken_by_lost(taker: str, alive: set[str]) -> bool:
    """Whether work taken by `taker` (an identity written by the worker) is lost: its process no longer
    heartbeats (`alive`: from `live_takers`)."""
    return taker not in alive


def lost_entries(listed: Mapping[K, str], ages: Mapping[K, float], alive: set[str], limit: float) -> list[K]:
    """The entries queued for longer than `limit`, and those taken by a worker process that is not alive."""
    return [key for key, value in listed.items() if (ages[key] > limit if key in ages else taken_by_lost(value, alive))]
