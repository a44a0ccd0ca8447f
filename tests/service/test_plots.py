"""The PNG endpoints: 640x480 images of a job's own history and weights; 404 and 409 that say why."""

from __future__ import annotations

import io
import struct
import time

import pytest
from PIL import Image

from api.routes.plots import grid_columns
from zdl import plot
from zdl.io import load_weights

PLOTS = ("loss.png", "accuracy.png", "weights.png")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk, after checking the signature; Pillow then decodes it fully."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    size = struct.unpack(">II", data[16:24])
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.size == size and image.format == "PNG"
    return size


def test_a_succeeded_job_has_all_three_pictures(api, submit, wait_for) -> None:
    job = wait_for(submit()["id"])
    assert job["status"] == "succeeded"
    for name in PLOTS:
        response = api.get(f"/v1/jobs/{job['id']}/plots/{name}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert response.headers["cache-control"].startswith("private")
        assert png_size(response.content) == plot.FIGURE_PX == (640, 480)


def test_the_pictures_are_of_this_jobs_history_and_weights(api, submit, wait_for) -> None:
    job = wait_for(submit(training={"seed": 11})["id"])
    history = api.get(job["links"]["history"]).json()
    W1 = load_weights(api.get(job["links"]["weights"]).content).params["W1"]
    base = f"/v1/jobs/{job['id']}/plots"
    assert api.get(f"{base}/loss.png").content == plot.loss_curve(history)
    assert api.get(f"{base}/accuracy.png").content == plot.accuracy_curves(history)
    assert api.get(f"{base}/weights.png").content == plot.first_layer_weights(W1, ncols=grid_columns(8))


@pytest.mark.parametrize("name", PLOTS)
def test_unknown_job_is_404(api, name: str) -> None:
    response = api.get(f"/v1/jobs/no-such-job/plots/{name}")
    assert response.status_code == 404 and response.json()["detail"] == "Job not found"


def test_a_running_job_draws_its_curves_so_far_but_has_no_weights(api, submit, wait_for) -> None:
    job = submit(training={"iters": 100_000})
    try:
        deadline = time.monotonic() + 30
        while api.get(job["links"]["self"]).json()["progress"]["iteration"] < 2:
            assert time.monotonic() < deadline, "the job made no progress in 30 s"
            time.sleep(0.05)
        base = f"/v1/jobs/{job['id']}/plots"
        loss = api.get(f"{base}/loss.png")
        assert loss.status_code == 200 and loss.headers["cache-control"] == "no-store"
        assert png_size(loss.content) == (640, 480)
        assert png_size(api.get(f"{base}/accuracy.png").content) == (640, 480)  # evaluated at iteration 0
        weights = api.get(f"{base}/weights.png")
        assert weights.status_code == 409
        assert weights.json()["detail"] == "Job is running: weights exist only for a succeeded job"
    finally:
        api.post(job["links"]["cancel"])
    assert wait_for(job["id"])["status"] == "cancelled"
    assert api.get(f"/v1/jobs/{job['id']}/plots/weights.png").json()["detail"].startswith("Job is cancelled")


def test_a_job_that_failed_before_training_has_no_pictures(api, job_without_data) -> None:
    job = job_without_data()
    assert job["status"] == "failed"
    expected = {"loss.png": "Job is failed and has recorded no loss yet",
                "accuracy.png": "Job is failed and has not evaluated its accuracy yet",
                "weights.png": "Job is failed: weights exist only for a succeeded job"}
    for name, detail in expected.items():
        response = api.get(f"/v1/jobs/{job['id']}/plots/{name}")
        assert response.status_code == 409 and response.json()["detail"] == detail
