"""What every Gnocchi route shares: the facade, the caller's identity, JSON bodies, Gnocchi's error form."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, Response

from telemetry.gnocchi.models import GnocchiError
from telemetry.gnocchi.service import GnocchiService
from telemetry.metrics import RECORDS_REJECTED

PREFIX = "/gnocchi"
T = TypeVar("T")
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 503: "Service Unavailable"}


def error_response(code: int, description: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """Gnocchi's error body: gnocchiclient matches ``description`` to raise ResourceNotFound and the like."""
    if code == 400:
        RECORDS_REJECTED.labels(stage="api.gnocchi", reason="bad_request").inc()
    return JSONResponse({"code": code, "description": description, "title": _TITLES.get(code, "Error")},
                        status_code=code, headers=headers)


def service(request: Request) -> GnocchiService:
    svc = request.app.state.runtime.gnocchi
    if svc is None:
        raise HTTPException(503, "the Gnocchi API needs the sample store, which this daemon does not run")
    found: GnocchiService = svc
    return found


def creator(request: Request) -> str:
    """``user:project`` as Gnocchi records a creator: from the noauth headers, or the Basic user name."""
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip()).decode("utf-8").partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            pass
    user, project = request.headers.get("x-user-id", ""), request.headers.get("x-project-id", "")
    return f"{user}:{project}" if user or project else ""



async def body_of(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GnocchiError(400, f"Unable to decode body: {exc}") from None


async def call(func: Callable[..., T], *args: Any) -> T:
    """Catalogue and store work off the event loop (it writes to a database)."""
    return await asyncio.to_thread(func, *args)


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in ("true", "1", "yes", "on")


def measure_params(request: Request) -> tuple[str, float | None, float | None, float | None]:
    """``aggregation``, ``granularity``, ``start``, ``stop`` of a measures read, as Gnocchi parses them."""
    from telemetry.gnocchi.models import to_seconds, to_timestamp

    p = request.query_params
    if p.get("resample"):
        raise GnocchiError(400, "resample is not supported here; use /v1/aggregates with (resample ...)")
    granularity = to_seconds(p["granularity"], "granularity") if p.get("granularity") else None
    start = to_timestamp(p["start"], "start").timestamp() if p.get("start") else None
    stop = to_timestamp(p["stop"], "stop").timestamp() if p.get("stop") else None
    return p.get("aggregation", "mean"), granularity, start, stop


def page(request: Request, items: list[T], key: Callable[[T], str]) -> tuple[list[T], dict[str, str] | None]:
    """Gnocchi's ``marker`` and ``limit``: the items after the marker, and a ``Link: rel=next`` when cut."""
    p = request.query_params
    marker, limit = p.get("marker"), p.get("limit")
    if marker:
        ids = [key(i) for i in items]
        if marker not in ids:
            raise GnocchiError(400, f"Invalid marker: `{marker}`")
        items = items[ids.index(marker) + 1:]
    if limit is not None and (not limit.isdigit() or int(limit) <= 0):
        raise GnocchiError(400, f"Invalid input: limit must be a positive integer, got {limit!r}")
    if limit and len(items) > int(limit):
        items = items[:int(limit)]
        return items, {"Link": f'<{request.url.include_query_params(marker=key(items[-1]))}>; rel="next"'}
    return items, None
