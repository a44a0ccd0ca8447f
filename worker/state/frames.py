"""The one frame the workers exchange through Redis: a JSON line, then float64 values as raw bytes.

Block notices (fan-out), a gang's parts and reports, and a turn's starting state all travel this way: the
header says what the values are, and the values are read without a copy (`np.frombuffer`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray


def pack(header: Mapping[str, Any], *arrays: NDArray[Any]) -> bytes:
    """One JSON line, then the arrays' float64 bytes laid end to end (their shapes are the header's business)."""
    body = b"".join(np.ascontiguousarray(a, dtype=np.float64).tobytes() for a in arrays)
    return json.dumps(dict(header)).encode() + b"\n" + body


def unpack(raw: bytes) -> tuple[dict[str, Any], NDArray[np.float64]]:
    """The header and the values of a frame made by `pack` (the values are read-only views of `raw`)."""
    header, _, body = raw.partition(b"\n")
    return json.loads(header), np.frombuffer(body, dtype=np.float64)
