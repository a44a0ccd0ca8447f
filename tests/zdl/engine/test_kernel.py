"""Choosing the kernel, compiling it once, and its on-disk cache where the package is read-only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import zdl
from zdl.engine import gradient, kernel_name, warm_up
from zdl.engine.kernel import numba_importable, resolve_kernel


def test_zdl_kernel_selects_the_implementation(monkeypatch):
    monkeypatch.setenv("ZDL_KERNEL", "numpy")
    assert kernel_name() == "numpy"
    monkeypatch.setenv("ZDL_KERNEL", "auto")
    assert kernel_name() == ("closed-form" if numba_importable() else "numpy")
    monkeypatch.setenv("ZDL_KERNEL", "numba")  # the evaluated compiled kernel, the closed form's second oracle
    assert kernel_name() == ("numba" if numba_importable() else "numpy")
    monkeypatch.delenv("ZDL_KERNEL")
    assert kernel_name() == resolve_kernel("auto")


def test_an_unknown_kernel_is_named(monkeypatch):
    monkeypatch.setenv("ZDL_KERNEL", "cuda")
    with pytest.raises(ValueError, match="kernel must be one of .*got 'cuda'"):
        kernel_name()
    params = {"W1": np.zeros((2, 2)), "b1": np.zeros(2), "W2": np.zeros((2, 2)), "b2": np.zeros(2)}
    with pytest.raises(ValueError, match="got 'fortran'"):
        gradient(params, np.ones((1, 2)), [0], kernel="fortran")


def test_threads_must_be_positive():
    params = {"W1": np.zeros((2, 2)), "b1": np.zeros(2), "W2": np.zeros((2, 2)), "b2": np.zeros(2)}
    with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
        gradient(params, np.ones((1, 2)), [0], threads=0)


def test_warm_up_returns_the_seconds_it_took():
    assert warm_up("numpy") >= 0
    assert 0 <= warm_up() < 60


SCRIPT = textwrap.dedent("""
    import json, time
    began = time.perf_counter()
    import zdl.engine
    seconds = zdl.engine.warm_up("numba")
    print(json.dumps({"file": zdl.__file__, "warm_up": seconds}))
""")


@pytest.mark.skipif(not hasattr(os, "geteuid") or (os.geteuid() == 0 and not shutil.which("setpriv")),
                    reason="needs POSIX file modes, and Linux setpriv to run as root")
def test_cache_works_where_the_package_is_read_only(tmp_path: Path):
    """The package in a folder the process may not write: Numba caches in the user's cache dir instead,
    and a second process loads the kernels from there instead of compiling them again."""
    if not numba_importable():
        pytest.skip("numba is not importable")
    package = tmp_path / "site" / "zdl"
    shutil.copytree(Path(zdl.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": str(package.parent), "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache")}
    env.pop("NUMBA_CACHE_DIR", None)
    command = [sys.executable, "-c", SCRIPT]
    if os.geteuid() == 0:  # root writes anywhere: run it without the capabilities that let it ignore file modes
        # (it still reads what it owns, such as a virtual environment in a checkout only root may enter)
        dac = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--bounding-set={dac}", f"--inh-caps={dac}", *command]
    folders = [package, *(path for path in package.rglob("*") if path.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
    try:
        runs = [_run_json(command, env, home) for _ in range(2)]
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert runs[0]["file"].startswith(str(package))
    assert not list(package.rglob("*.nbi")), "wrote its cache into the read-only package"
    assert list((home / "cache" / "numba").rglob("*.nbi")), "no cache in the user's cache dir"
    assert runs[1]["warm_up"] < runs[0]["warm_up"] / 2, runs  # loaded, not compiled (cold ~5 s, cached ~0.3 s)


def _run_json(command: list[str], env: dict[str, str], cwd: Path) -> dict[str, object]:
    """The JSON object the command prints last."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))
