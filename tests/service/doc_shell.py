"""docs/operations.md's shell blocks run as an operator runs them: bash, the operator's environment, a scratch
directory, and a test's own paths and ports in place of the document's.

A shell is a dict: `env`, `cwd`, `substitute` (the document's text -> the test's, replaced in order), `groups`
(the process groups started, for `stop_group`) and, for a block run on another host, `prefix` (the command that
enters it, e.g. `ip netns exec NAME`). With `session` (a list, at first empty) the shell keeps, as a reader's
terminal does, the variables that earlier blocks set (`export X=...`, `x=...` lines) for the blocks after them.
Tests call `run` with the heading as a literal: test_operations_doc.py reads those calls to know which blocks a
test runs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.service.doc_blocks import block

REPO = Path(__file__).resolve().parents[2]
OPERATIONS = REPO / "docs" / "operations.md"
#: A line that sets a variable in the shell (`export NAME=...` or `name=...`).
ASSIGNMENT = re.compile(r"^(export\s+)?[A-Za-z_]\w*=")


def run(shell: dict[str, object], heading: str, env: dict[str, str] | None = None) -> str:
    """Run the doc's block under `heading` with bash (-e: the first failing command fails it); its output."""
    text = block(OPERATIONS, heading)
    for old, new in shell["substitute"].items():  # type: ignore[attr-defined]
        text = text.replace(old, new)
    if "session" in shell:
        kept: list[str] = shell["session"]  # type: ignore[assignment]
        shell["session"] = kept + [line for line in text.splitlines() if ASSIGNMENT.match(line)]
        text = "".join(f"{line}\n" for line in kept) + text
    background = text.rstrip().endswith("&")  # it starts a service and leaves it running: output to a file
    output = open(Path(shell["cwd"]) / f"{heading}.out", "w") if background else subprocess.PIPE  # type: ignore[arg-type]
    command = [*shell.get("prefix", []), "bash", "-euo", "pipefail", "-c", text]  # type: ignore[misc]
    popen = subprocess.Popen(command, cwd=shell["cwd"],  # type: ignore[arg-type]
                             env={**shell["env"], **(env or {})}, stdout=output,  # type: ignore[dict-item]
                             stderr=subprocess.STDOUT if background else subprocess.PIPE, text=True,
                             start_new_session=True)
    shell["groups"].append(popen.pid)  # type: ignore[attr-defined]
    if background:
        return ""
    try:
        out, err = popen.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        out, err = popen.communicate()
        raise AssertionError(f"{heading}: still running after 180 s\n{out}\n{err}") from None
    assert popen.returncode == 0, f"{heading}: exit {popen.returncode}\n{text}\n{out}\n{err}"
    return out


def stop_group(group: int) -> None:
    """SIGTERM a block's process group (its `zdl cluster up &`), wait, then SIGKILL what is left."""
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(group, signal.SIGKILL)
