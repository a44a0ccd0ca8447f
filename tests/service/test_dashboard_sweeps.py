"""The dashboard's sweep view in real headless Chromium: overlaid curves, the best run, diverged runs, sorting.

Screenshots go to $ZDL_SCREENSHOT_DIR (else the test's tmp dir) for a person to look at. The browser is
Debian's Chromium driven by Playwright, as in test_dashboard.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

#: Jobs made here are deleted after each test (the session key has a stored-jobs quota).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("leaves_no_jobs")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = "test-key-7f3a"  # conftest.API_KEY
#: 784-100-10 by backprop; a learning rate of 1e308 overflows the output layer at the first step (NaN loss).
BASE = {"model": {"hidden_size": 100}, "dataset": "mnist",
        "training": {"iters": 60, "batch_size": 20, "learning_rate": 0.1, "seed": 3},
        "gradient": {"method": "backprop"}}
GRID = {"learning_rate": [0.1, 1, 1e308], "seed": [3, 4]}


@pytest.fixture(scope="module")
def page(cluster: Any) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        context.set_default_timeout(30_000)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.goto(cluster.url + "/")
        page.fill("#api-key", KEY)
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("#job-form")
        yield page
        browser.close()


@pytest.fixture
def shot(tmp_path: Path) -> Any:
    directory = Path(os.environ.get("ZDL_SCREENSHOT_DIR") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return lambda page, name: page.screenshot(path=directory / f"{name}.png", full_page=True)


def until(page: Any, expression: str, arg: object = None, timeout_s: float = 30.0) -> None:
    """Poll `expression` in the page until truthy (not wait_for_function: the page's CSP forbids its eval)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression, arg):
        assert time.monotonic() < deadline, f"timed out waiting for {expression} ({arg})"
        time.sleep(0.05)


def column(page: Any, index: int) -> list[str]:
    return page.eval_on_selector_all("#sweep-table tbody tr", "(rows, i) => rows.map(r => r.cells[i].innerText)",
                                     index)


def test_the_sweep_view_overlays_every_run_and_sorts_the_table(page: Any, api: httpx.Client, shot: Any) -> None:
    sweep = api.post("/v1/sweeps", json={"name": "lr-seed", "base": BASE, "grid": GRID}).json()
    page.goto(page.url.split("#")[0] + "#/")
    page.wait_for_selector(f"#sweeps-table tr[data-sweep-id='{sweep['id']}']")
    shot(page, "10-home-with-sweeps")
    page.click(f"#sweeps-table tr[data-sweep-id='{sweep['id']}'] a")
    page.wait_for_selector("#sweep-view[data-status=finished]", timeout=60_000)
    final = api.get(f"/v1/sweeps/{sweep['id']}").json()
    assert final["counts"]["succeeded"] == 4 and final["counts"]["failed"] == 2
    until(page, "() => document.querySelector('#sweep-loss').dataset.series === '4'")  # diverged: no finite loss
    assert page.get_attribute("#sweep-loss", "data-points") == str(4 * 60)
    assert page.get_attribute("#sweep-accuracy", "data-series") == "6"  # a diverged run was evaluated once
    assert page.get_attribute("#sweep-loss", "data-best") == final["best"]
    legend = page.inner_text("#sweep-legend")
    assert legend.count("(diverged)") == 2 and legend.count("(best)") == 1
    best_row = page.locator("#sweep-table tbody tr.best")
    assert best_row.count() == 1 and best_row.get_attribute("data-job-id") == final["best"]
    diverged = page.locator("#sweep-table tbody tr[data-diverged=true]")
    assert diverged.count() == 2 and diverged.first.locator(".badge-diverged").inner_text() == "diverged"
    assert all(text == "NaN" for text in diverged.evaluate_all("rows => rows.map(r => r.cells[4].innerText)"))
    assert column(page, 1)[-2:] == ["1e+308", "1e+308"]  # best first: the diverged runs last
    shot(page, "11-sweep-view")

    page.click("#sweep-table th[data-key=test_acc] button")
    assert page.get_attribute("#sweep-table th[data-key=test_acc]", "aria-sort") == "ascending"
    shown = [run["test_acc"] for run in sorted(final["runs"], key=lambda r: (r["test_acc"] is None, r["test_acc"]))]
    assert column(page, 6) == [f"{100 * v:.1f} %" if v is not None else "–" for v in shown]
    page.click("#sweep-table th[data-key=test_acc] button")
    assert page.get_attribute("#sweep-table th[data-key=test_acc]", "aria-sort") == "descending"
    page.click("#sweep-table th[data-key='param:learning_rate'] button")
    assert column(page, 1) == ["0.1", "0.1", "1", "1", "1e+308", "1e+308"]
    shot(page, "12-sweep-sorted-by-learning-rate")
    assert not page.errors, page.errors


def test_cancel_a_sweep_from_its_view(page: Any, api: httpx.Client, shot: Any) -> None:
    long = {**BASE, "model": {"hidden_size": 8}, "training": {**BASE["training"], "iters": 100_000},
            "gradient": {"method": "numerical"}}
    sweep = api.post("/v1/sweeps", json={"base": long, "grid": {"seed": [1, 2]}}).json()
    try:
        page.goto(page.url.split("#")[0] + f"#/sweeps/{sweep['id']}")
        page.wait_for_selector("#sweep-cancel")
        until(page, "() => Number(document.querySelector('#sweep-loss').dataset.points) > 0")
        page.click("#sweep-cancel")
        page.click("#sweep-cancel-yes")
        page.wait_for_selector("#sweep-view[data-status=finished]", timeout=10_000)
        assert "2 cancelled" in page.inner_text("#sweep-counts")
        assert page.locator("#sweep-cancel").count() == 0
        shot(page, "13-sweep-cancelled")
    finally:
        api.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert not page.errors, page.errors
