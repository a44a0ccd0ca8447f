"""Where `zdl cluster up` keeps its state, so that `zdl.client` finds the URL and API key it saved.

The service writes these files and the client reads them; both import the names from here, so the two
can never disagree on where they are. The state dir is, in this order: `$ZDL_STATE_DIR`; the
`.zdl/cluster` of the checkout around the working directory (where `./scripts/main-job` and
`./scripts/notebook` keep their cluster, so a notebook in `examples/` finds it); the user's state dir.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

#: The user's state dir, used outside a checkout that holds a cluster of its own.
USER_STATE_DIR = Path(platformdirs.user_state_dir("zdl")) / "cluster"
#: A checkout's own state dir, relative to the checkout (gitignored).
CHECKOUT_STATE_DIR = Path(".zdl") / "cluster"
#: The API key `zdl cluster up` made (mode 0600), kept across restarts of the same state dir.
API_KEY_FILE = "api-key"
#: The URL of the API `zdl cluster up` started last with this state dir.
URL_FILE = "url"


def default_state_dir(start: Path | None = None) -> Path:
    """$ZDL_STATE_DIR, else `.zdl/cluster` in `start` (default: the working directory) or the nearest parent
    that has one, else USER_STATE_DIR."""
    if os.environ.get("ZDL_STATE_DIR"):
        return Path(os.environ["ZDL_STATE_DIR"])
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / CHECKOUT_STATE_DIR).is_dir():
            return directory / CHECKOUT_STATE_DIR
    return USER_STATE_DIR


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def saved_api_key(state_dir: Path | None = None) -> str | None:
    """The key a `zdl cluster up` with this state dir saved, or None if there is none (or it is unreadable)."""
    return _read((state_dir or default_state_dir()) / API_KEY_FILE)


def saved_url(state_dir: Path | None = None) -> str | None:
    """The URL a `zdl cluster up` with this state dir saved, or None if there is none."""
    return _read((state_dir or default_state_dir()) / URL_FILE)
