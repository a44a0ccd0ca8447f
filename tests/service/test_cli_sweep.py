"""`zdl sweep` as a user runs it: a separate process against the real service, a table, files written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.cluster.processes import free_port

#: Jobs made here are deleted after each test (the session key has a stored-jobs quota).
pytestmark = pytest.mark.usefixtures("leaves_no_jobs")

ZDL = [sys.executable, "-c", "import sys; from zdl.cli import main; sys.exit(main())"]
KEY = {"ZDL_API_KEY": "test-key-7f3a"}  # conftest.API_KEY


def zdl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ZDL, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_sweep_trains_every_combination_and_prints_the_table(cluster, tmp_path: Path) -> None:
    result = zdl("sweep", "--url", cluster.url, "--hidden", "8", "--iters", "20", "--batch-size", "20",
                 "--lr", "0.1,1", "--seed", "1,2", "--name", "cli", "--out", str(tmp_path), env=KEY)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("sweep ") and f"{cluster.url}/#/sweeps/" in lines[0]
    header = lines[1].split()
    assert header == ["learning_rate", "seed", "status", "final_loss", "train_acc", "test_acc", "iteration"]
    table = [line.split() for line in lines[2:6]]
    assert sorted((row[0], row[1]) for row in table) == [("0.1", "1"), ("0.1", "2"), ("1", "1"), ("1", "2")]
    assert all(row[2] == "succeeded" and row[6] == "20" for row in table)
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [(r["learning_rate"], r["seed"]) for r in rows] == [(float(row[0]), int(row[1])) for row in table]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sweep" in result.stderr and "80/80" in result.stderr  # one progress bar for all 4 jobs


def test_sweep_mistakes_are_one_line_errors(cluster) -> None:
    single = zdl("sweep", "--url", cluster.url, "--lr", "0.1", env=KEY)
    assert single.returncode == 2 and "give at least one setting with several values" in single.stderr
    bad = zdl("sweep", "--url", cluster.url, "--hidden", "8,zero", env=KEY)
    assert bad.returncode == 2 and "--hidden: invalid" in bad.stderr
    refused = zdl("sweep", "--url", cluster.url, "--lr", "0.1,-1", "--iters", "5", env=KEY)
    assert refused.returncode == 2 and "422 grid.learning_rate: Input should be greater than 0" in refused.stderr
    nowhere = zdl("sweep", "--url", f"http://127.0.0.1:{free_port()}", "--seed", "1,2", env=KEY)
    assert nowhere.returncode == 2 and "cannot reach the zdl service" in nowhere.stderr
    for result in (single, bad, refused, nowhere):
        assert "Traceback" not in result.stderr
