"""The Gnocchi v1 API subset Ceilometer, Aodh, Heat and Grafana use, under ``/gnocchi``.

Clients are given ``http://HOST:8777/gnocchi`` as Gnocchi's endpoint. The
routes are thin: the catalogue and the measures are the domain's
(``telemetry.gnocchi``), and every refusal is a ``GnocchiError`` that
``app.py`` renders in Gnocchi's JSON (``{"code", "description", "title"}``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from telemetry.api.gnocchi import metrics, policies, resources
from telemetry.api.gnocchi.common import PREFIX, error_response, reply

router = APIRouter(prefix=PREFIX, tags=["gnocchi"])


@router.get("/")
def versions(request: Request) -> Response:
    base = str(request.base_url).rstrip("/") + PREFIX
    return reply({"versions": [{"id": "v1.0", "status": "CURRENT", "updated": "2013-12-01T00:00:00Z",
                                "links": [{"href": f"{base}/v1/", "rel": "self"}]}]})


@router.get("/v1/")
def v1(request: Request) -> Response:
    return reply({"version": "1.0", "links": [{"rel": "self", "href": str(request.url)}]})


for _sub in (policies.router, resources.router, metrics.router):
    router.include_router(_sub)

__all__ = ["PREFIX", "error_response", "router"]
