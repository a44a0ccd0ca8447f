"""Filling a Redis to its last byte with data of nobody's (as another application, or a runaway script, would)."""

from __future__ import annotations

import redis


def fill_to_the_last_byte(client: redis.Redis, prefix: str = "filler") -> int:
    """Write ever smaller values until even a one-byte one is refused; returns how many were written.

    Redis accepts a write while it uses at most `maxmemory`, so the last accepted write leaves it at or over
    the limit: afterwards every write that may grow memory is refused (`noeviction`)."""
    size, written = 1 << 20, 0
    while size >= 1:
        try:
            client.set(f"{prefix}:{written}", b"x" * size)
            written += 1
        except redis.exceptions.OutOfMemoryError:
            size //= 4
    return written


def at_maxmemory(client: redis.Redis) -> bool:
    memory = client.info("memory")
    return int(memory["used_memory"]) >= int(memory["maxmemory"]) > 0
