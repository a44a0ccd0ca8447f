"""One file from a URL into place: streamed with a progress bar, checksum-verified, written atomically.

zdl/datasets.py decides what to fetch from where; this module only moves bytes and keeps the promise that a
file at its final path is whole (a failed or cut-off download leaves nothing behind).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

DOWNLOAD_TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 16


class DownloadError(Exception):
    """A download that ended early; the caller tries the next mirror."""


class ChecksumError(DownloadError):
    """A complete download whose SHA-256 is not the published one."""


def download_file(url: str, path: Path, sha256: Iterable[str], max_bytes: int) -> None:
    """Stream `url` into a temp file beside `path` (a progress bar on stderr), verify, then rename: `path` is
    whole or absent. A body announced or found to be over `max_bytes` is refused (nothing is kept), so a wrong
    or hostile mirror cannot fill the disk before the checksum is computed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm  # here, not at import: it looks for IPython (a widget bar in a notebook)

    accepted = tuple(sha256)
    digest = hashlib.sha256()

    def write(out: IO[bytes]) -> None:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            expected = response.headers.get("Content-Length")
            if expected is not None and int(expected) > max_bytes:
                raise DownloadError(f"the server announces {int(expected):,} bytes, more than the {max_bytes:,} "
                                    "bytes this file may have")
            received = 0
            with tqdm(total=int(expected) if expected else None, desc=path.name, unit="B", unit_scale=True,
                      unit_divisor=1024, leave=True) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    if received + len(chunk) > max_bytes:
                        raise DownloadError(f"more than the {max_bytes:,} bytes this file may have; stopped")
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        # http.client returns a short body without complaint when the server closes early.
        if expected is not None and received != int(expected):
            raise DownloadError(f"connection closed after {received} of {expected} bytes")
        if digest.hexdigest() not in accepted:
            raise ChecksumError(f"SHA-256 {digest.hexdigest()} is not the published {' or '.join(accepted)}")

    atomic_write(path, write)


def say(message: str) -> None:
    """A line for the person waiting on a download (stderr, between progress bars; logging is off by default)."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through a temp file in the same directory and os.replace it; no partial file survives."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
