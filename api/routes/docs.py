"""/docs (Swagger UI) and /redoc, working offline: their scripts and styles come from the pinned
`fastapi-offline` package and are served by the API itself, never from a CDN, so no third-party script
runs on the origin where the dashboard keeps the user's API key.

Each page has a Content-Security-Policy that allows only this origin; Swagger UI's one inline start-up
script is allowed by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"


def inline_script_hashes(html: str) -> str:
    """CSP source expressions ('sha256-...') for each inline <script> of the page."""
    bodies = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in bodies)


def page(html: HTMLResponse, extra: str = "") -> HTMLResponse:
    """The page with a CSP: this origin only, plus its own inline scripts by hash."""
    body = bytes(html.body).decode()
    policy = (f"default-src 'self'; script-src 'self' {inline_script_hashes(body)}; style-src 'self' 'unsafe-inline'; "
              f"img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'{extra}")
    return HTMLResponse(body, headers={"Content-Security-Policy": policy, "Cache-Control": "no-cache"})


def install(app: FastAPI, openapi_url: str) -> None:
    """Add /docs, /redoc and their assets to `app` (which was made with docs_url=None, redoc_url=None)."""
    router = APIRouter(include_in_schema=False)
    swagger = page(get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - API docs",
                                       swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                                       swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                                       swagger_favicon_url=f"{ASSETS_URL}/favicon.png"))
    redoc = page(get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc",
                                redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js", with_google_fonts=False,
                                redoc_favicon_url=f"{ASSETS_URL}/favicon.png"), "; worker-src 'self' blob:")

    @router.get("/docs")
    def docs() -> HTMLResponse:
        return swagger

    @router.get("/redoc")
    def redoc_page() -> HTMLResponse:
        return redoc

    app.include_router(router)
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
