"""``/ui``: the web console's page and assets, and the session check its login form uses.

Assets are served from a list made once at start-up (``asset_names``), so a
request can never name a file outside the console's folder.
"""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field

from telemetry.api.principal import principal
from telemetry.ui import STATIC, asset_names

router = APIRouter(tags=["console"])
_ASSETS = asset_names()
#: Vendored files never change under a name; the console's own may change with an upgrade.
_CACHE = {"vendor": "public, max-age=86400", "own": "no-cache"}
#: The page runs only its own files and talks only to this daemon: an injected script or a
#: link to another host in a log line cannot run or exfiltrate anything. uPlot styles its
#: elements through the DOM, which style-src does not restrict.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Session(BaseModel):
    auth_required: bool = Field(description="True when api.tokens is configured: the console asks for a token")
    authenticated: bool = Field(description="True when this request carried a valid token (or none is needed)")


@router.get("/ui", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html",
                        headers={"Cache-Control": _CACHE["own"], **_PAGE_HEADERS})


@router.get("/ui/", include_in_schema=False)
def index_slash() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/ui/static/{name:path}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    if name not in _ASSETS or name == "index.html":
        raise HTTPException(404, f"no console asset {name!r}")
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    cache = _CACHE["vendor"] if name.startswith("vendor/") else _CACHE["own"]
    return FileResponse(STATIC / name, media_type=media, headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"})


@router.get("/ui/session", response_model=Session, summary="Whether the console needs a token, and if this one is valid")
def session(request: Request) -> Session:
    """The console's login form sends the token it was given here first: a 200 with authenticated false re-asks."""
    required = bool(request.app.state.auth_required)
    return Session(auth_required=required, authenticated=not required or principal(request) is not None)
