"""Where `zdl cluster up` keeps its state, so that `zdl.client` finds the API key it saved.

The service writes these files and the client reads them; both import the names from here, so the two
can never disagree on where the key is.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs

#: `zdl cluster up --state-dir` default: Redis data, process logs, generated secrets and the API key.
DEFAULT_STATE_DIR = Path(platformdirs.user_state_dir("zdl")) / "cluster"
#: The API key `zdl cluster up` generated (mode 0600), in the state dir.
API_KEY_FILE = "api-key"


def saved_api_key(state_dir: Path = DEFAULT_STATE_DIR) -> str | None:
    """The key a `zdl cluster up` with this state dir saved, or None if there is none (or it is unreadable)."""
    try:
        return (state_dir / API_KEY_FILE).read_text().strip() or None
    except OSError:
        return None
