"""/v1/jobs/{id}/plots: a job's curves and first-layer weights as PNG images (640x480), drawn by zdl.plot.

For the CLI, notebooks and the dashboard. A running job's curves show what it has recorded so far;
a picture of something the job does not have yet (no loss, no evaluation, no weights) is a 409 that
says why. Drawing takes tens of milliseconds of CPU, so the routes are plain `def`s (run in a thread).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Response

from api.auth import require_owner
from api.deps import JobDep, StoreDep
from api.models import ErrorOut
from worker.state.keys import FINISHED
from zdl import plot
from zdl.io import load_weights

router = APIRouter(prefix="/v1/jobs/{job_id}/plots", tags=["plots"], dependencies=[Depends(require_owner)])

#: More hidden units than this would be too small to see at 640x480; the first ones are drawn.
MAX_WEIGHT_IMAGES = 100

PNG_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "a 640x480 PNG"},
    401: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut, "description": "the job has nothing to draw yet"},
}


@router.get("/loss.png", response_class=Response, responses=PNG_RESPONSES)
def loss_png(job: JobDep, store: StoreDep) -> Response:
    """The mini-batch loss per iteration (the book's figure 4-11), so far while the job runs."""
    history = _history(job, store)
    if not history["loss"]:
        raise HTTPException(409, f"Job is {job['status']} and has recorded no loss yet")
    return _png(job, lambda: plot.loss_curve(history))


@router.get("/accuracy.png", response_class=Response, responses=PNG_RESPONSES)
def accuracy_png(job: JobDep, store: StoreDep) -> Response:
    """Train and test accuracy per epoch (the book's figure 4-12), so far while the job runs."""
    history = _history(job, store)
    if not history["train_acc"]:
        raise HTTPException(409, f"Job is {job['status']} and has not evaluated its accuracy yet")
    return _png(job, lambda: plot.accuracy_curves(history))


@router.get("/weights.png", response_class=Response, responses=PNG_RESPONSES)
def weights_png(job: JobDep, store: StoreDep) -> Response:
    """Each hidden unit's incoming weights as a 28x28 image (red positive, blue negative); at most the first 100."""
    data = store.weights(job["id"]) if job["status"] == "succeeded" else None
    if data is None:
        raise HTTPException(409, f"Job is {job['status']}: weights exist only for a succeeded job")
    W1 = load_weights(data).params["W1"][:, :MAX_WEIGHT_IMAGES]
    return _png(job, lambda: plot.first_layer_weights(W1, ncols=grid_columns(W1.shape[1])))


def grid_columns(n_images: int) -> int:
    """Columns that make n square images fill a 4:3 picture best (10 units: 4x3 cells of 160 px, not 1 row)."""
    width, height = plot.FIGURE_PX
    return max(1, min(n_images, round(math.sqrt(n_images * width / height))))


def _history(job: dict[str, Any], store: StoreDep) -> dict[str, Any]:
    history = store.history(job["id"])
    if history is None:
        raise HTTPException(404, "Job not found")
    return history


def _png(job: dict[str, Any], draw: Callable[[], bytes]) -> Response:
    """The drawing as image/png; a finished job's pictures never change, so browsers may keep them."""
    try:
        data = draw()
    except ValueError as exc:  # e.g. a history whose train and test accuracies disagree in length
        raise HTTPException(409, f"cannot draw this job's data: {exc}") from exc
    cache = "private, max-age=86400" if job["status"] in FINISHED else "no-store"
    return Response(data, media_type="image/png", headers={"Cache-Control": cache})
