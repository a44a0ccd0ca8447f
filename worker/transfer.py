"""Arrays through Redis as raw bytes, described in task messages by key, dtype and shape.

Celery messages stay small JSON (a broker message must never carry pickles or megabytes); the arrays of
one step are written once by the coordinator and read by every block task, all with an expiry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from numpy.typing import NDArray

#: Only plain numeric dtypes may be named in a message: nothing that could hold objects.
_NUMERIC_KINDS = "fiub"


@dataclass(frozen=True)
class ArrayRef:
    """Where an array lives in Redis and how to read its bytes back."""

    key: str
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArrayRef:
        return cls(str(data["key"]), str(data["dtype"]), tuple(int(n) for n in data["shape"]))

    def decode(self, raw: bytes | None) -> NDArray[Any]:
        """The array from its raw bytes; KeyError if the key is gone (expired or deleted)."""
        if raw is None:
            raise KeyError(self.key)
        dtype = np.dtype(self.dtype)
        if dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(f"ArrayRef {self.key}: dtype {self.dtype!r} is not a plain numeric type")
        expected = math.prod(self.shape) * dtype.itemsize
        if len(raw) != expected:
            raise ValueError(f"ArrayRef {self.key}: {len(raw)} bytes, expected {expected} for {self.dtype}{self.shape}")
        return np.frombuffer(raw, dtype=dtype).reshape(self.shape)


def put_array(pipe: redis.client.Pipeline, key: str, array: NDArray[Any], ttl_s: int) -> ArrayRef:
    """Queue a SET of the array's C-order bytes on `pipe`; returns the reference to send instead."""
    array = np.asarray(array)
    pipe.set(key, array.tobytes(order="C"), ex=ttl_s)
    return ArrayRef(key, array.dtype.str, tuple(array.shape))
