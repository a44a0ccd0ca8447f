"""Files a run leaves behind: written atomically (temp file + rename), so no reader ever sees half a file."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from zdl.nets import PARAM_NAMES, TwoLayerNet


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same directory and an atomic rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def weights_bytes(params: Mapping[str, NDArray[np.float64]]) -> bytes:
    """An `.npz` archive with keys W1 b1 W2 b2, as bytes (for files and HTTP responses)."""
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {key: np.asarray(params[key]) for key in PARAM_NAMES}
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def save_weights(params: Mapping[str, NDArray[np.float64]], path: str | os.PathLike[str]) -> Path:
    return atomic_write_bytes(path, weights_bytes(params))


def load_weights(source: str | os.PathLike[str] | bytes) -> TwoLayerNet:
    """A `TwoLayerNet` from an `.npz` of W1 b1 W2 b2 (a path or the bytes); ValueError if it is not one."""
    name = "the data" if isinstance(source, bytes) else str(source)
    try:
        loaded = np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"load_weights: {name} is not a readable .npz: {exc}") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"load_weights: {name} is a single array, not an .npz with W1 b1 W2 b2")
    try:
        with loaded as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"load_weights: {name} is not a readable .npz: {exc}") from exc
    return TwoLayerNet.from_params(arrays)
