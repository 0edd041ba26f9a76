"""/healthz and /metrics."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from telemetry import __version__
from telemetry.api.schemas import Health, PipelineSnapshot, json_body
from telemetry.metrics import exposition, pipeline_snapshot

router = APIRouter()


@router.get("/healthz", tags=["core"], responses={**json_body(Health), **json_body(Health, 503, "A component failed")})
def healthz(request: Request) -> JSONResponse:
    """Every component with its state; 503 (``degraded``) when any failed or reports a problem."""
    rt = request.app.state.runtime
    components = {c.name: c.health() for c in rt.components}
    ok = all(h["state"] == "running" and "problem" not in h for h in components.values())
    body = {
        "status": "ok" if ok else "degraded",
        "version": __version__,
        "mode": rt.mode,
        "host": rt.settings.host,
        "uptime_seconds": round(time.time() - rt.started_at, 3),
        "bus": rt.bus.describe(),
        "components": components,
    }
    if not ok:
        body["problems"] = {name: h.get("problem") or h.get("error") or h["state"] for name, h in components.items()
                            if h["state"] != "running" or "problem" in h}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", tags=["core"], response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition; every name starts with telemetry_"}})
def metrics(names: Annotated[list[str] | None, Query(alias="name[]", max_length=100,
                                                    description="Only these sample names (as Prometheus's own "
                                                    "handler)")] = None) -> Response:
    return Response(exposition(names or ()), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/pipeline", tags=["core"], summary="The pipeline's counters now, for rates between two readings",
            responses=json_body(PipelineSnapshot))
def pipeline(request: Request) -> JSONResponse:
    """Records in and out per stage, rejected, per-topic bus figures, spool and lag, and each component's state.

    Read-only and cheap (one pass over the registry), so the console polls it every few seconds.
    """
    body = pipeline_snapshot()
    body["components"] = {c.name: c.health() for c in request.app.state.runtime.components}
    return JSONResponse(body)
