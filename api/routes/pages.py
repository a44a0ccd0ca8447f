"""The dashboard: `/` is the page, `/static/*` its stylesheet and scripts (plain files, no build step).

The page keeps the user's API key, so it runs nothing but its own files: its Content-Security-Policy
allows scripts, styles, connections and images from this origin only (images also as data: and blob:
URLs, for the PNGs it fetches with the key), no inline script or style, and no framing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")

router = APIRouter(tags=["dashboard"], include_in_schema=False)


#: On the page and on every file under /static (the page is there too, as /static/index.html).
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer"}


@router.get("/")
def index() -> FileResponse:
    """The single page; everything it shows it fetches from /v1 with the user's API key."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache", **SECURITY_HEADERS})


class _SecureStaticFiles(StaticFiles):
    """StaticFiles whose every response carries the page's security headers."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(SECURITY_HEADERS)
        return response


def static_files() -> StaticFiles:
    """The page's assets, to mount at /static."""
    return _SecureStaticFiles(directory=STATIC_DIR)
