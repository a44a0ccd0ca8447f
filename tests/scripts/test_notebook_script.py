"""`scripts/notebook` as a reader runs it: JupyterLab comes up on the chapter's notebook with its kernel and a local
cluster, the page renders in real headless Chromium from local assets only (a screenshot is kept), a second run
reuses the cluster, and Ctrl-C leaves no process of either behind.

Jupyter's own directories (settings, workspaces, runtime, IPython) point into the test's tmp dir; the kernel is
registered in .venv, as the script does for a reader.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.examples import chapter4
from tests.service.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from worker.cluster.processes import free_port, port_open

pytestmark = pytest.mark.slow

SCRIPT = chapter4.REPO / "scripts" / "notebook"
ADDRESS = re.compile(r"The notebook: (http://127\.0\.0\.1:(\d+)/lab/tree/chapter4\.ipynb\?token=\w+)")
START_TIMEOUT_S = 300.0


class Notebook:
    """One `scripts/notebook` in its own process group, its output collected as it comes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        self.lines: list[str] = []
        assert self.process.stdout is not None
        stdout = self.process.stdout
        self.reader = threading.Thread(target=lambda: self.lines.extend(stdout), daemon=True)
        self.reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def address(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (match := ADDRESS.search(self.output)):
            assert self.process.poll() is None, f"scripts/notebook exited ({self.process.returncode}):\n{self.output}"
            assert time.monotonic() < deadline, f"no address printed in {START_TIMEOUT_S} s:\n{self.output}"
            time.sleep(0.2)
        return match.group(1)

    def interrupt(self, timeout_s: float = 120.0) -> int:
        """Ctrl-C, as a terminal sends it: SIGINT to the script's whole process group; its exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(timeout_s)
        self.reader.join(10)
        return code


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (by parent links in /proc), whatever session it moved to."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.add(pid)
    return living


def environment_of(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(pair.decode().split("=", 1) for pair in pairs if b"=" in pair)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The script's environment: free ports, a state dir, a cache and Jupyter's directories in tmp, no downloads."""
    jupyter = tmp_path / "jupyter"
    return {**os.environ, "ZDL_CACHE_DIR": str(tmp_path / "cache"), "ZDL_MNIST_MIRRORS": "",
            "ZDL_STATE_DIR": str(tmp_path / "state"), "ZDL_PORT": str(free_port()),
            "ZDL_NOTEBOOK_PORT": str(free_port()), "ZDL_WORKERS": "1",
            "JUPYTER_CONFIG_DIR": str(jupyter / "config"), "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(jupyter / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(jupyter / "workspaces"), "IPYTHONDIR": str(jupyter / "ipython")}


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_lab(browser: Any, address: str, screenshot: Path) -> tuple[list[str], list[str]]:
    """Open the printed address, wait for the notebook to render with its kernel idle, screenshot it; return the
    requests that left 127.0.0.1:<lab port> (refused) and the local ones that failed."""
    origin = address.split("/lab/")[0]
    elsewhere: list[str] = []
    failed: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 1000})

    def route(route: Any) -> None:
        if route.request.url.startswith(origin) or route.request.url.startswith(origin.replace("http", "ws")):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    page.on("requestfailed", lambda r: r.url.startswith(origin) and failed.append(f"{r.url}: {r.failure}"))
    page.goto(address, timeout=120_000)
    page.wait_for_selector(".jp-RenderedMarkdown h3:has-text('4.2.1 二乗和誤差 / Sum of squared errors')",
                           timeout=180_000)
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    kernel = page.locator(".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName").first
    kernel.wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelector('.jp-NotebookPanel-toolbar .jp-Toolbar-kernelName')"
                           "?.textContent.includes('zdl')", timeout=120_000)
    assert page.locator(".jp-Dialog").count() == 0  # no "select a kernel" dialog: the named kernel was found
    page.wait_for_function("() => document.querySelector('#jp-main-statusbar')?.textContent.includes('Idle')",
                           timeout=120_000)  # the kernel started and answers
    setup = page.locator(".jp-CodeCell", has_text="import matplotlib.pyplot as plt").first
    setup.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")  # run the imports in the kernel, from the page
    setup.locator(".jp-InputPrompt:has-text('[1]')").wait_for(timeout=120_000)
    assert setup.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert page.get_by_text("Jupyter news").count() == 0  # nothing asks to fetch news from a website
    page.screenshot(path=screenshot)
    page.close()
    return elsewhere, failed


def test_scripts_notebook_serves_the_chapter_offline_and_cleans_up(env: dict[str, str], browser: Any,
                                                                   tmp_path: Path) -> None:
    first = Notebook(env)
    started: set[int] = set()
    try:
        address = first.address()
        url = f"http://127.0.0.1:{env['ZDL_PORT']}"
        assert f"starting a zdl cluster at {url}" in first.output
        key = (Path(env["ZDL_STATE_DIR"]) / "api-key").read_text().strip()
        assert httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        lab = next(pid for pid in descendants(first.process.pid)
                   if b"jupyterlab" in Path(f"/proc/{pid}/cmdline").read_bytes())
        lab_env = environment_of(lab)  # what every kernel JupyterLab starts inherits
        assert lab_env["ZDL_URL"] == url and lab_env["ZDL_API_KEY"] == key

        screenshot = Path(os.environ.get("ZDL_SCREENSHOT_DIR") or tmp_path) / "scripts-notebook-lab.png"
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        elsewhere, failed = open_lab(browser, address, screenshot)
        assert elsewhere == [] and failed == []
        assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one

        env_2 = {**env, "ZDL_NOTEBOOK_PORT": str(free_port())}
        second = Notebook(env_2)
        try:
            second.address()
            assert f"using the zdl cluster already running at {url}" in second.output
        finally:
            second_group = descendants(second.process.pid)
            assert second.interrupt() == 130
        assert alive(second_group) == set() and not port_open(int(env_2["ZDL_NOTEBOOK_PORT"]))
        assert httpx.get(f"{url}/readyz").status_code == 200  # the second run left the first one's cluster up
        started = descendants(first.process.pid)
    finally:
        started |= descendants(first.process.pid)
        code = first.interrupt()
    assert code == 130, first.output
    deadline = time.monotonic() + 30
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive(started) == set(), first.output
    assert not port_open(int(env["ZDL_PORT"])) and not port_open(int(env["ZDL_NOTEBOOK_PORT"]))
    assert "stopping the zdl cluster" in first.output
