"""Worker heartbeats in Redis: who is listening on which queue, without asking the workers.

`/readyz` and `blocks: "auto"` need to know which workers are alive. `celery inspect ping` waits on
replies from every worker (a second or more, and nothing while a solo worker computes); a heartbeat
is one ZADD every few seconds from a thread of each worker, and one ZCOUNT to read. Each worker also
says how many jobs it runs at once (its slots, for the scheduler). The thread is a Celery bootstep
(`worker.celery_app.bootsteps`); in coordinator workers it also does the rounds of `worker.scheduling.rounds`.

A heartbeat is kept per worker process, not per name: a member is `<hostname>#<instance>`, the instance chosen
when the process starts. `zdl cluster up` starts a killed worker again under its name; the work the dead
process had taken (a gang's replica, a block loop, a block group) names the instance that took it, so it is
seen lost once that instance stops heartbeating, although the name is alive again (worker/scheduling/lost_work.py).
"""

from __future__ import annotations

import logging
import os
import secrets
import time

import redis

from worker.settings import Settings
from worker.state import keys
from worker.state.headroom import ending_pipeline
from worker.state.replies import texts

log = logging.getLogger(__name__)

#: This worker process's instance, chosen when it starts (at import, in the worker's main process: its pool
#: processes fork from it and share it, as they share its heartbeat).
INSTANCE = f"{os.getpid()}-{secrets.token_hex(4)}"


def identity(hostname: str) -> str:
    """This process's heartbeat member, and what it writes into the work it takes: `<hostname>#<instance>`."""
    return f"{hostname}#{INSTANCE}"


def worker_name(member: str) -> str:
    """The worker's hostname in a heartbeat member (or in the identity written into taken work)."""
    return member.rpartition("#")[0] or member


def beat(client: redis.Redis, settings: Settings, hostname: str, queues: list[str], slots: int = 1) -> None:
    """Mark `hostname` (as this process: `identity`) alive on each queue now, with its number of slots, and drop
    members long gone. A full store takes it too (worker/headroom.py): a worker must never look dead for want
    of room."""
    now, member = time.time(), identity(hostname)

    def fill(pipe: redis.client.Pipeline) -> None:
        for queue in queues:
            pipe.zremrangebyscore(keys.workers(settings, queue), "-inf", now - 10 * settings.heartbeat_ttl_s)
            pipe.zadd(keys.workers(settings, queue), {member: now})
            pipe.hset(keys.slots(settings, queue), hostname, slots)

    ending_pipeline(client, settings, fill)


def leave(client: redis.Redis, settings: Settings, hostname: str, queues: list[str]) -> None:
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zrem(keys.workers(settings, queue), identity(hostname))
            pipe.hdel(keys.slots(settings, queue), hostname)
        pipe.execute()


def alive_workers(client: redis.Redis, settings: Settings, queue: str) -> set[str]:
    """Hostnames that heartbeated on `queue` within the last heartbeat_ttl_s seconds."""
    return {worker_name(member) for member in alive_instances(client, settings, queue)}


def alive_instances(client: redis.Redis, settings: Settings, queue: str) -> set[str]:
    """Worker processes (`<hostname>#<instance>`) that heartbeated on `queue` within the last heartbeat_ttl_s
    seconds: a worker killed and started again under its name is here twice until the dead one's TTL passes."""
    members = client.zrangebyscore(keys.workers(settings, queue), time.time() - settings.heartbeat_ttl_s, "+inf")
    return set(texts(members))


def recently_lost_workers(client: redis.Redis, settings: Settings, queue: str) -> set[str]:
    """Worker processes (`<hostname>#<instance>`) whose heartbeat on `queue` stopped within the last few minutes
    (killed, or cut off; also one started again since under the same name); a worker that shuts down cleanly
    leaves the set instead."""
    now = time.time()
    members = client.zrangebyscore(keys.workers(settings, queue), now - 10 * settings.heartbeat_ttl_s,
                                   f"({now - settings.heartbeat_ttl_s}")
    return set(texts(members))
