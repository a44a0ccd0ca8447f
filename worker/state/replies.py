"""Redis replies, typed at the edge.

This project's clients never decode responses (the same connections carry raw arrays), so every reply is
bytes. redis-py types a reply as `bytes | str` because it cannot know how a client was built; these
functions narrow it once, where it arrives, and fail loudly if a client was built to return text, instead of
letting a `str` travel into code that decodes, unpacks or hashes bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

T = TypeVar("T")

#: A hash to write with HSET: field names and values as this project writes them.
Fields = dict[FieldT, EncodableT]


def as_bytes(reply: object) -> bytes:
    """A reply that must be bytes (a value that exists)."""
    if not isinstance(reply, bytes):
        raise TypeError(f"Redis replied {type(reply).__name__} where bytes were expected "
                        "(a client with decode_responses=True?)")
    return reply


def maybe_bytes(reply: object) -> bytes | None:
    """A reply that is bytes, or None where the key or field does not exist."""
    return None if reply is None else as_bytes(reply)


def text(reply: object) -> str:
    """A reply that holds UTF-8 text (ids, statuses, owner ids)."""
    return as_bytes(reply).decode()


def texts(replies: Iterable[object]) -> list[str]:
    """Each of a list reply's members as text (set and sorted-set members, list items)."""
    return [text(reply) for reply in replies]


def hash_reply(reply: Mapping[Any, Any]) -> dict[bytes, bytes]:
    """An HGETALL reply, as bytes to bytes."""
    return {as_bytes(field): as_bytes(value) for field, value in reply.items()}


def transaction(client: redis.Redis, body: Callable[[Pipeline], T], *watched: str) -> T:
    """Run `body` in WATCH/MULTI/EXEC over `watched` keys, retried while they change, and return what it returns.

    redis-py's own `transaction` types its callable as returning None although `value_from_callable` returns
    the callable's value; this says what it does.
    """
    return cast(T, client.transaction(cast(Callable[[Pipeline], None], body), *watched, value_from_callable=True))
