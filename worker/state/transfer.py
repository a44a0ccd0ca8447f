"""Arrays through Redis as raw bytes, described in requests by key, dtype and shape.

Requests stay small JSON (a message must never carry pickles or megabytes); the arrays of one step are
written once by the coordinator and read by every block loop, all with an expiry. A batch of normalized
pixels travels as its uint8 codes (`zdl.pixels`, a quarter of float32's bytes) when they give back
exactly the same bits.

Step data goes to the step Redis (`Settings.step_redis_url`), a server without persistence, with plain
SET and RPUSH. Where there is none and it shares the Redis that keeps job records in an append-only
file, it is written by scripts that keep it out of that file; `StepData` knows which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from numpy.typing import NDArray

from zdl.pixels import normalize_pixels, pack_pixels

#: Only plain numeric dtypes may be named in a message: nothing that could hold objects.
_NUMERIC_KINDS = "fiub"

#: Step data is transient, so it is written without entering Redis's append-only file (or replicas):
#: `redis.set_repl(REPL_NONE)` is Redis's switch for that. A restarted Redis resumes jobs from their
#: checkpoints, never from step keys, and the ~0.5 MB a step writes would otherwise be appended to disk.
_SET_UNLOGGED = """
redis.set_repl(redis.REPL_NONE)
return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
"""
_PUSH_UNLOGGED = """
redis.set_repl(redis.REPL_NONE)
local length = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return length
"""


@dataclass(frozen=True)
class ArrayRef:
    """Where an array lives in Redis and how to read its bytes back."""

    key: str
    dtype: str
    shape: tuple[int, ...]
    pixels: bool = False  # stored as uint8 pixel codes, to be normalized back to `dtype`

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "dtype": self.dtype, "shape": list(self.shape), "pixels": self.pixels}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArrayRef:
        return cls(str(data["key"]), str(data["dtype"]), tuple(int(n) for n in data["shape"]),
                   bool(data.get("pixels", False)))

    def decode(self, raw: bytes | None) -> NDArray[Any]:
        """The array from its raw bytes; KeyError if the key is gone (expired or deleted)."""
        if raw is None:
            raise KeyError(self.key)
        dtype = np.dtype(self.dtype)
        if dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(f"ArrayRef {self.key}: dtype {self.dtype!r} is not a plain numeric type")
        stored = np.dtype(np.uint8) if self.pixels else dtype
        expected = math.prod(self.shape) * stored.itemsize
        if len(raw) != expected:
            raise ValueError(f"ArrayRef {self.key}: {len(raw)} bytes, expected {expected} for "
                             f"{stored.str}{self.shape}")
        array = np.frombuffer(raw, dtype=stored).reshape(self.shape)
        return normalize_pixels(array, dtype) if self.pixels else array


@dataclass(frozen=True)
class StepData:
    """The Redis that carries step data, and how to write to it.

    unlogged: the server also keeps job records (no step Redis is configured), so writes go through
    scripts that keep them out of its append-only file and replicas (`redis.set_repl`); a step Redis
    of its own takes plain writes, about twice as fast for the ~300 KB values of a step.
    """

    client: redis.Redis
    unlogged: bool

    def put_array(self, pipe: redis.client.Pipeline, key: str, array: NDArray[Any], ttl_s: int,
                  pixels: bool = False) -> ArrayRef:
        """Queue a SET of the array's C-order bytes on `pipe`; returns the reference to send instead.

        pixels: try to store it as pixel codes (for a batch of images; falls back to raw bytes).
        """
        array = np.asarray(array)
        codes = pack_pixels(array) if pixels else None
        stored = (array if codes is None else codes).tobytes(order="C")
        if self.unlogged:
            pipe.eval(_SET_UNLOGGED, 1, key, stored, ttl_s)
        else:
            pipe.set(key, stored, ex=ttl_s)
        return ArrayRef(key, array.dtype.str, tuple(array.shape), codes is not None)

    def push(self, pipe: redis.client.Pipeline, key: str, value: bytes, ttl_s: int) -> None:
        """Queue an RPUSH of transient data (a completion notice) on `pipe`, with an expiry."""
        if self.unlogged:
            pipe.eval(_PUSH_UNLOGGED, 1, key, value, ttl_s)
        else:
            pipe.rpush(key, value)
            pipe.expire(key, ttl_s)
