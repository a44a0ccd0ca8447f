"""A job record in its Redis hash: which fields are numbers or JSON, and the codec both ways (values as text,
floats with repr so they read back exactly)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from worker.state.cancel import CANCEL_FIELD
from worker.state.replies import Fields

_FLOATS = frozenset({
    "created_at", "started_at", "finished_at", "loss", "train_acc", "test_acc", "iterations_per_s", "eta_s",
    "elapsed_s", "gradient_s", "fanout_overhead_ms", "core_seconds", "group_memory_mb", "cpu_seconds",
})
_INTS = frozenset({"iteration", "total", "blocks", CANCEL_FIELD, "runs", "resumed_from", "interruptions",
                   "reserved_bytes", "diverged", "stored_bytes"})
_JSON = frozenset({"spec"})

Record = dict[str, Any]


def decode_record(raw: Mapping[bytes, bytes]) -> Record:
    """A job record from its Redis hash (bytes to typed values)."""
    record: Record = {}
    for key_bytes, value_bytes in raw.items():
        key, value = key_bytes.decode(), value_bytes.decode()
        if key in _FLOATS:
            record[key] = float(value)
        elif key in _INTS:
            record[key] = int(value)
        elif key in _JSON:
            record[key] = json.loads(value)
        else:
            record[key] = value
    return record


def encode_fields(fields: Mapping[str, Any]) -> Fields:
    """Hash values as text; floats with repr so they read back exactly; None fields are skipped."""
    out: Fields = {}
    for key, value in fields.items():
        if value is None:
            continue
        out[key] = json.dumps(value) if key in _JSON else repr(value) if isinstance(value, float) else str(value)
    return out
