"""The live dashboard: one static page at `/` (plain ES modules from `/static/`, no build step;
`app.js` imports the others, one per panel).

The page talks to the public API only: REST for reads and actions, `/v1/events` for live
updates, REST polling while the stream is down.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Nothing but these files is served: no path from the URL ever reaches the file system.
_JS = "text/javascript; charset=utf-8"
_MODULES = (
    "app", "api", "state", "util", "stream", "health", "jobs", "queue", "gallery", "forms",
    "compare", "sync", "schedules", "pullsync", "recovery",
)  # fmt: skip
_FILES = {
    **{f"{name}.js": _JS for name in _MODULES},
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# Revalidate every load (ETag / Last-Modified make that cheap) so an edit shows at once.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    """The dashboard page."""
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS
    )


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    """One of the dashboard's own files."""
    media_type = _FILES.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no static file {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=_HEADERS)
