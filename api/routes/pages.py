"""The dashboard: `/` is the page, `/static/*` its stylesheet and scripts (plain files, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """The single page; everything it shows it fetches from /v1 with the user's API key."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def static_files() -> StaticFiles:
    """The page's assets, to mount at /static."""
    return StaticFiles(directory=STATIC_DIR)
