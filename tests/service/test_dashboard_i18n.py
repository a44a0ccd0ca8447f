"""The dashboard in Japanese, in real headless Chromium: a browser that asks for Japanese gets it, the header's
switch flips the language both ways without a reload, and the choice outlives a reload."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.test_dashboard import SMALL, Dashboard, browser, screenshot_dir  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

#: Every text the page shows, but code and commands (kept as written), the names of jobs and sweeps, and the
#: reasons the server gave for failed jobs (data, like the names: earlier tests' jobs of the same key show them).
VISIBLE_TEXTS = """() => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (node.data.trim() && parent.checkVisibility() && !parent.closest("code, .topbar .key, .job-link, .error-text")) {
      found.push(node.data.trim());
    }
  }
  return found;
}"""
#: Text that is the same in both languages: names, numbers, the settings' own names and values (dataset, method).
UNTRANSLATED = re.compile(r"^(zdl|MNIST|auto|mnist|fashion-mnist|numerical|numerical-reference|backprop|English|"
                          r"[a-z]+(_[a-z]+)+( × [a-z]+(_[a-z]+)+)*|[\d.,:%/ ·×–+-]*|.*[ぁ-んァ-ヶ一-龠].*)$")


@pytest.fixture
def open_dashboard(browser: Any, cluster: Any, api: httpx.Client,  # noqa: F811 (browser is a fixture)
                   screenshot_dir: Path) -> Iterator[Any]:  # noqa: F811
    """`open_dashboard(locale)`: a fresh browser context whose navigator.language and Accept-Language are
    `locale`, on the dashboard; jobs its tests started are cancelled at the end."""
    contexts: list[Any] = []
    boards: list[Dashboard] = []

    def open_in(locale: str) -> Dashboard:
        context = browser.new_context(locale=locale, viewport={"width": 1360, "height": 900})
        context.set_default_timeout(30_000)
        contexts.append(context)
        board = Dashboard(context.new_page(), cluster.url + "/", screenshot_dir)
        boards.append(board)
        return board

    yield open_in
    for context in contexts:
        context.close()
    for board in boards:
        for job_id in board.created:
            api.post(f"/v1/jobs/{job_id}/cancel")


def language(page: Any) -> str:
    return str(page.evaluate("document.documentElement.lang"))


def test_a_browser_that_asks_for_japanese_gets_it_and_the_switch_flips_it(open_dashboard: Any) -> None:
    board = open_dashboard("ja-JP")
    page = board.page
    accept_languages: list[str] = []
    page.on("request", lambda r: r.url.endswith("/") and accept_languages.append(r.headers["accept-language"]))
    page.goto(board.url)
    page.wait_for_selector("#api-key")
    assert accept_languages and accept_languages[0].startswith("ja")  # what the browser asked the server for
    assert language(page) == "ja" and page.title() == "zdl · 学習ダッシュボード"
    assert page.inner_text("#key-form h1") == "zdl 学習ダッシュボードへようこそ"
    assert page.get_attribute("#api-key", "placeholder") == "API キー"
    assert page.inner_text("#key-form code >> nth=1") == "zdl cluster up"  # commands stay as they are typed
    page.click("#key-form button[type=submit]")
    assert page.inner_text("#api-key-error") == "続けるにはキーを入力してください。"
    board.shot("ja-01-key")

    board.enter_key()
    page.wait_for_selector(".service-ready")
    assert page.inner_text(".form-card h2") == "新しい学習ジョブ"
    assert page.inner_text("#job-form button[type=submit]") == "学習を開始"
    assert re.fullmatch(r"準備完了 · ブロックワーカー \d+ 台", page.inner_text("#service-status"))
    english_left = [text for text in page.evaluate(VISIBLE_TEXTS) if not UNTRANSLATED.match(text)]
    assert not english_left, english_left
    board.shot("ja-02-home")

    job_id = board.submit(SMALL)  # a view rendered after the switch was set, and text that changes live
    board.wait_status("succeeded")
    assert page.inner_text("#job-status") == "完了"
    board.shot("ja-03-job")

    assert page.inner_text("#lang-switch") == "English"
    page.click("#lang-switch")
    assert language(page) == "en" and page.inner_text("#job-status") == "succeeded"
    assert page.title() == "zdl · training dashboard" and page.inner_text("#lang-switch") == "日本語"
    assert page.evaluate("localStorage.getItem('zdl.lang')") == "en"
    page.reload()
    page.wait_for_selector("#job-view[data-status=succeeded]")
    assert language(page) == "en" and page.inner_text("#job-status") == "succeeded"  # remembered
    page.click("#lang-switch")
    assert language(page) == "ja" and page.inner_text("#job-status") == "完了"
    assert job_id in page.url
    board.check()


def test_an_english_browser_gets_english_until_switched(open_dashboard: Any) -> None:
    board = open_dashboard("en-US")
    page = board.page
    board.enter_key()
    assert language(page) == "en" and page.inner_text(".form-card h2") == "New training job"
    assert page.inner_text("#lang-switch") == "日本語"
    page.click("#lang-switch")
    assert page.inner_text(".form-card h2") == "新しい学習ジョブ"
    assert "隠れ層のニューロン数" in page.inner_text("#job-form") and "Hidden units" not in page.inner_text("#job-form")
    board.shot("ja-04-switched")
    page.reload()
    page.wait_for_selector("#job-form")
    assert language(page) == "ja" and page.inner_text(".form-card h2") == "新しい学習ジョブ"
    page.click("#lang-switch")
    assert page.inner_text(".form-card h2") == "New training job" and "Hidden units" in page.inner_text("#job-form")
    board.check()
