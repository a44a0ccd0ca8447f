"""tests/conftest.py's CI rule, run for real: pytest in a subprocess on tiny test files beside a copy of it.

Under CI=true a skipped test, a test whose fixture skips, and a module that skips at import must each fail
the run and name what was missing; without CI they skip as usual; an expected failure stays one either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

TESTS = '''
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("no frobnicator on the PATH")

@pytest.fixture
def widget_data():
    pytest.skip("the widget data set is absent")

def test_needs_the_fixture(widget_data):
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_known_bug():
    assert False
'''

MODULE_SKIP = '''
import pytest

pytest.importorskip("zdl_no_such_module", reason="zdl_no_such_module is not installed")

def test_never_collected():
    pass
'''


def run_pytest(tmp_path: Path, source: str, ci: str | None) -> tuple[int, str]:
    """(exit code, output) of pytest on one test file next to a copy of tests/conftest.py."""
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_tiny.py").write_text(source)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # this directory is the rootdir: no repository settings
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the rule needs no plugin; loading them all takes seconds
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "test_tiny.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_each_skip_fails_naming_what_is_missing(tmp_path: Path, ci: str) -> None:
    code, output = run_pytest(tmp_path, TESTS, ci)
    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in output, output
    failed = next(line for line in output.splitlines() if line.startswith("FAILED test_tiny.py::test_skips"))
    assert "CI=true" in failed and "no frobnicator on the PATH" in failed
    errored = next(line for line in output.splitlines() if line.startswith("ERROR test_tiny.py::test_needs_the_"))
    assert "CI=true" in errored and "the widget data set is absent" in errored


@pytest.mark.parametrize("ci", [None, "false"])
def test_elsewhere_skips_stay_skips(tmp_path: Path, ci: str | None) -> None:
    code, output = run_pytest(tmp_path, TESTS, ci)
    assert code == pytest.ExitCode.OK, output
    assert "1 passed, 2 skipped, 1 xfailed" in output, output


def test_under_ci_a_module_that_skips_is_a_collection_error(tmp_path: Path) -> None:
    code, output = run_pytest(tmp_path, MODULE_SKIP, "true")
    assert code == pytest.ExitCode.INTERRUPTED, output  # pytest stops after errors during collection
    assert "ERROR test_tiny.py" in output and "zdl_no_such_module is not installed" in output, output
    assert "CI=true" in output


def test_elsewhere_a_module_that_skips_is_skipped(tmp_path: Path) -> None:
    code, output = run_pytest(tmp_path, MODULE_SKIP, None)
    assert code == pytest.ExitCode.NO_TESTS_COLLECTED and "1 skipped" in output, output
