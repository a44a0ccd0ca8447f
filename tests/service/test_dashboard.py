"""The dashboard in real headless Chromium against the real service: key, submit, watch, compare, cancel, errors.

Each test drives the page as a first-time user would and asserts on the DOM (not on pixels); every
step is saved as a screenshot in $ZDL_SCREENSHOT_DIR (else the test's tmp dir) for a person to look at.
Chromium is Debian's (/usr/bin/chromium), driven by Playwright; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from zdl.io import load_weights

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = "test-key-7f3a"  # conftest.API_KEY, one of the session cluster's keys
#: A job of about a second: 784-8-10 on the service's 200 synthetic images, batch 20 (10 iterations an epoch);
#: learning rate 1 so that the loss visibly falls in the screenshots.
SMALL = {"model.hidden_size": "8", "training.iters": "60", "training.batch_size": "20",
         "training.learning_rate": "1", "training.seed": "3"}
BOOK_FORM = {"model.hidden_size": "50", "model.weight_init_std": "0.01", "dataset": "mnist", "training.iters": "10000",
             "training.batch_size": "100", "training.learning_rate": "0.1", "training.seed": "0",
             "gradient.method": "numerical", "gradient.blocks": "auto"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install "
                                                                 "playwright; no browser download is needed)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("ZDL_SCREENSHOT_DIR") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class Dashboard:
    """A browser tab on the dashboard, the /v1 requests it made, and the jobs it created (cancelled at the end)."""

    def __init__(self, page: Any, url: str, screenshot_dir: Path) -> None:
        self.page, self.url, self.screenshot_dir = page, url, screenshot_dir
        self.v1_requests: list[tuple[str, str | None]] = []
        self.page_errors: list[str] = []
        self.created: list[str] = []
        page.on("request", lambda r: "/v1/" in r.url and self.v1_requests.append((r.url, r.headers.get(
            "authorization"))))
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def shot(self, name: str) -> None:
        self.page.screenshot(path=self.screenshot_dir / f"{name}.png", full_page=True)

    def enter_key(self) -> None:
        self.page.goto(self.url)
        self.page.fill("#api-key", KEY)
        self.page.click("#key-form button[type=submit]")
        self.page.wait_for_selector("#job-form")

    def fill(self, fields: dict[str, str]) -> None:
        for name, value in fields.items():
            control = self.page.locator(f"[name='{name}']")
            if control.evaluate("el => el.tagName") == "SELECT":
                control.select_option(value)
            else:
                control.fill(value)

    def submit(self, fields: dict[str, str]) -> str:
        """Fill and submit the form; the page then shows the new job. Returns its id."""
        self.fill(fields)
        self.page.click("#job-form button[type=submit]")
        self.page.wait_for_url(re.compile(r"#/jobs/\w+$"))
        job_id = self.page.url.rsplit("/", 1)[-1]
        self.created.append(job_id)
        return job_id

    def wait_status(self, status: str, timeout_ms: int = 30_000) -> None:
        self.page.wait_for_selector(f"#job-view[data-status={status}]", timeout=timeout_ms)

    def wait_points(self, selector: str, at_least: int = 1) -> None:
        self.until("([s, n]) => Number(document.querySelector(s)?.dataset.points) >= n", [selector, at_least])

    def until(self, expression: str, arg: object = None, timeout_s: float = 30.0) -> None:
        """Poll `expression` (a function of `arg`, evaluated in the page) until it is truthy. Not Playwright's
        wait_for_function: that evaluates a string in the page, which the page's CSP rightly forbids."""
        deadline = time.monotonic() + timeout_s
        while not self.page.evaluate(expression, arg):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {expression} ({arg})")
            time.sleep(0.05)

    def field_error(self, name: str) -> str:
        return self.page.inner_text(f".field[data-field='{name}'] .field-error")

    def check(self) -> None:
        """No uncaught script errors, and every /v1 request carried the key."""
        assert not self.page_errors, self.page_errors
        assert self.v1_requests, "the page made no /v1 requests"
        unauthorized = [url for url, header in self.v1_requests if header != f"Bearer {KEY}"]
        assert not unauthorized, unauthorized


@pytest.fixture
def dashboard(browser: Any, cluster: Any, api: httpx.Client, screenshot_dir: Path) -> Iterator[Dashboard]:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    context.set_default_timeout(30_000)
    board = Dashboard(context.new_page(), cluster.url + "/", screenshot_dir)
    try:
        yield board
    finally:
        context.close()
        for job_id in board.created:  # whatever failed, leave no job training for the next test
            api.post(f"/v1/jobs/{job_id}/cancel")


def test_a_first_visit_asks_for_a_key_then_remembers_and_sends_it(dashboard: Dashboard) -> None:
    page = dashboard.page
    page.goto(dashboard.url)
    page.wait_for_selector("#api-key")
    dashboard.shot("01-enter-key")
    page.click("#key-form button[type=submit]")
    assert page.inner_text("#api-key-error") == "Enter a key to continue."
    dashboard.enter_key()
    assert page.evaluate("localStorage.getItem('zdl.apiKey')") == KEY
    assert {name: page.input_value(f"[name='{name}']") for name in BOOK_FORM} == BOOK_FORM
    page.wait_for_selector("#jobs-table tbody tr, #jobs-empty:not([hidden])")
    page.wait_for_selector(".service-ready")
    dashboard.shot("02-home")
    page.reload()
    page.wait_for_selector("#job-form")  # the key is remembered
    assert page.locator("#api-key").count() == 0
    dashboard.check()


def test_submit_watch_download_and_compare(dashboard: Dashboard, api: httpx.Client) -> None:
    page = dashboard.page
    dashboard.enter_key()
    first = dashboard.submit(SMALL)
    dashboard.wait_points("#loss-chart")
    dashboard.shot("03-job-live")
    dashboard.wait_status("succeeded")
    dashboard.wait_points("#loss-chart", 60)
    dashboard.until("() => document.querySelector('#weights-image')?.naturalWidth > 0")
    assert page.eval_on_selector("#weights-image", "img => [img.naturalWidth, img.naturalHeight]") == [640, 480]
    assert page.inner_text("#job-status") == "succeeded"
    assert page.inner_text("#stat-test").endswith("%") and page.inner_text("#stat-blocks") == "2"
    assert page.get_attribute("#accuracy-chart", "data-points") == "12"  # 6 epochs, train and test
    assert page.locator("#cancel-button").count() == 0
    dashboard.shot("04-job-succeeded")

    with page.expect_download() as download:
        page.click("#download-weights")
    assert download.value.suggested_filename == f"{first}-weights.npz"
    weights = Path(download.value.path()).read_bytes()
    assert weights == api.get(f"/v1/jobs/{first}/weights").content
    assert load_weights(weights).params["W1"].shape == (784, 8)
    with page.expect_download() as download:
        page.click("#download-history")
    assert len(json.loads(Path(download.value.path()).read_text())["loss"]) == 60

    page.click("#train-again")  # the same settings, now with backprop: the curves should coincide
    page.wait_for_selector("#job-form")
    assert page.input_value("[name='model.hidden_size']") == "8"
    second = dashboard.submit({"gradient.method": "backprop"})
    dashboard.wait_status("succeeded")
    page.click("text=← All jobs")
    for job_id in (first, second):
        page.check(f"#jobs-table tr[data-job-id='{job_id}'] input[type=checkbox]")
    assert page.inner_text("#compare-button") == "Compare 2 selected"
    page.click("#compare-button")
    page.wait_for_url(re.compile(r"#/compare/"))
    page.wait_for_selector("#compare-loss[data-series='2']")
    assert page.get_attribute("#compare-accuracy", "data-series") == "4"
    assert page.locator("table.compare tbody tr").count() == 2
    assert page.locator("table.compare th.differs").all_inner_texts() == ["Gradient"]
    assert "largest loss difference" in page.inner_text("#compare-agreement")
    dashboard.shot("05-compare")
    dashboard.check()


def test_cancel_a_running_job(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.enter_key()
    job_id = dashboard.submit({**SMALL, "training.iters": "100000"})
    dashboard.wait_status("running")
    dashboard.wait_points("#loss-chart", 3)
    page.click("#cancel-button")
    page.wait_for_selector("#cancel-confirm")
    dashboard.shot("06-cancel-confirm")
    page.click("#cancel-yes")
    dashboard.wait_status("cancelled", timeout_ms=10_000)
    assert page.inner_text("#job-status") == "cancelled"
    assert page.locator("#cancel-button, #cancel-confirm").count() == 0
    assert page.is_disabled("#download-weights")
    dashboard.shot("07-job-cancelled")
    page.click("text=← All jobs")
    page.wait_for_selector(f"#jobs-table tr[data-job-id='{job_id}'][data-status=cancelled]")
    dashboard.check()


def test_validation_errors_appear_next_to_their_fields(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.enter_key()
    dashboard.fill({"model.hidden_size": "0", "training.iters": "many", "gradient.blocks": "some"})
    page.click("#job-form button[type=submit]")
    page.wait_for_selector(".field.invalid")
    assert "greater than or equal to 1" in dashboard.field_error("model.hidden_size")
    assert "valid integer" in dashboard.field_error("training.iters")
    assert 'positive integer or "auto"' in dashboard.field_error("gradient.blocks")
    assert dashboard.field_error("training.batch_size") == ""
    assert page.inner_text("#job-form .banner-error") == "Please fix the fields marked in red."
    assert page.evaluate("location.hash") in ("", "#/")  # nothing was created
    dashboard.shot("08-validation-errors")

    dashboard.fill({"model.hidden_size": "5000", "training.iters": "10", "gradient.blocks": "auto"})
    page.click("#job-form button[type=submit]")
    dashboard.until("() => document.querySelector(\".field[data-field='model.hidden_size'] .field-error\")"
                    ".textContent.includes('limit')")
    assert "over the limit of 1024" in dashboard.field_error("model.hidden_size")
    assert page.locator(".field.invalid").count() == 1
    dashboard.check()


def test_a_rejected_key_asks_for_another(dashboard: Dashboard) -> None:
    """The service answers a wrong key with 401; the page forgets the key and asks again."""
    page = dashboard.page
    page.goto(dashboard.url)
    page.fill("#api-key", "not-" + KEY)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#api-key-error:has-text('rejected this API key')")
    assert page.evaluate("localStorage.getItem('zdl.apiKey')") is None
    dashboard.shot("09-key-rejected")
    assert not dashboard.page_errors, dashboard.page_errors
