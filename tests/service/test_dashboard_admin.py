"""The dashboard's admin page in real headless Chromium against the class cluster: an admin sees every key
with its usage, every running job with its owner (and cancels one), and the workers; a student sees no
link to it and, going there anyway, nothing but a notice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import ADMIN_KEY, SMALL_JOB, ClassCluster
from tests.service.test_dashboard import browser, screenshot_dir

__all__ = ["browser", "screenshot_dir"]  # the fixtures, shared with the other dashboard tests

pytestmark = pytest.mark.slow

LONG_JOB: dict[str, Any] = {**SMALL_JOB, "training": {**SMALL_JOB["training"], "iters": 100_000}}


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(30_000)
    errors: list[str] = []
    tab = context.new_page()
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, errors


def enter(page: Any, url: str, key: str) -> None:
    page.goto(url + "/")
    page.fill("#api-key", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#job-form")


def until(page: Any, expression: str, arg: object = None, timeout_s: float = 30.0) -> None:
    """Poll a function of `arg` in the page until truthy (the page's CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression, arg):
        assert time.monotonic() < deadline, f"timed out waiting for {expression} ({arg})"
        time.sleep(0.05)


def test_an_admin_sees_keys_jobs_and_workers_and_cancels_a_students_job(
        class_cluster: ClassCluster, page: Any, screenshot_dir: Path) -> None:
    student = class_cluster.add_key("ui-student")
    with class_cluster.client(student) as client:
        job_id = client.post("/v1/jobs", json=LONG_JOB).json()["id"]
    try:
        class_cluster.wait(job_id, until=("running",))
        enter(page, class_cluster.url, ADMIN_KEY)
        page.wait_for_selector("#admin-link:not([hidden])")
        page.click("#admin-link")
        page.wait_for_selector(f"#admin-jobs tr[data-job='{job_id}']")
        until(page, "() => document.querySelectorAll('#admin-workers tr').length >= 3")
        page.screenshot(path=screenshot_dir / "admin-01-view.png", full_page=True)
        row = page.locator(f"#admin-jobs tr[data-job='{job_id}']")
        assert "ui-student" in row.inner_text() and "running" in row.inner_text()
        assert page.locator("#admin-keys tr[data-key='ui-student']").count() == 1
        assert page.locator("#admin-keys tr[data-key='admin'] td").nth(1).inner_text() == "yes"
        workers = page.inner_text("#admin-workers")
        assert "coordinator" in workers and "blocks" in workers and job_id[:8] in workers
        row.locator("button[data-cancel]").click()
        assert class_cluster.wait(job_id)["status"] == "cancelled"
        until(page, "(id) => !document.querySelector(`#admin-jobs tr[data-job='${id}']`)", job_id)
        page.screenshot(path=screenshot_dir / "admin-02-cancelled.png", full_page=True)
    finally:
        with class_cluster.client(ADMIN_KEY) as admin:
            admin.post(f"/v1/jobs/{job_id}/cancel")


def test_a_student_sees_none_of_it(class_cluster: ClassCluster, page: Any, screenshot_dir: Path) -> None:
    enter(page, class_cluster.url, class_cluster.add_key("ui-curious"))
    page.wait_for_load_state("networkidle")
    assert page.locator("#admin-link").is_hidden()
    page.goto(class_cluster.url + "/#/admin")
    page.wait_for_selector("#admin-error:not([hidden])")
    page.screenshot(path=screenshot_dir / "admin-03-student.png", full_page=True)
    assert "needs an admin key" in page.inner_text("#admin-error")
    for table in ("#admin-keys", "#admin-jobs", "#admin-workers"):
        assert page.locator(f"{table} tr").count() == 0
