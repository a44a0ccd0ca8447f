"""The block loop's view of a worker shutdown: Celery's flags, 0 (EX_OK) included."""

from __future__ import annotations

import pytest
from celery.worker import state

from worker.celery_app.tasks import worker_stopping


@pytest.mark.parametrize(("should_stop", "should_terminate", "stopping"), [
    (None, None, False), (False, None, False), (0, None, True), (1, None, True), (None, True, True),
])
def test_worker_stopping(monkeypatch, should_stop, should_terminate, stopping: bool) -> None:
    monkeypatch.setattr(state, "should_stop", should_stop)
    monkeypatch.setattr(state, "should_terminate", should_terminate)
    assert worker_stopping() is stopping
