"""Actions API: delivery log, dead letters, allow-list and silences.

With ``api.tokens`` set, reads need a token of any scope and everything that
changes what gets sent (silences, allow-list, retrying a dead letter) an
``admin`` one (telemetry/api/auth.py). Targets are returned redacted.
"""

from __future__ import annotations

from typing import Any

# Handlers are async on purpose: they share the SQLite connection with the dispatcher on the event loop.
from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ValidationError

from telemetry.actions.models import DeliveryRow, Silence, SilenceIn
from telemetry.api.services import actions_service
from telemetry.errors import describe

router = APIRouter(tags=["actions"])


class AllowListBody(BaseModel):
    targets: list[str]


@router.get("/v1/actions/deliveries", response_model=list[DeliveryRow])
async def deliveries(request: Request, limit: int = Query(100, ge=1, le=10000), status: str | None = None,
               alarm_id: str | None = None) -> list[DeliveryRow]:
    """Newest first: every attempt and every decision not to send, with redacted targets."""
    return actions_service(request).deliveries(limit, status, alarm_id)


@router.get("/v1/actions/dead-letters")
async def dead_letters(request: Request, limit: int = Query(100, ge=1, le=10000)) -> list[dict[str, Any]]:
    return actions_service(request).dead_letters(limit)


@router.post("/v1/actions/dead-letters/{item}/retry", status_code=202)
async def retry_dead_letter(request: Request, item: str) -> dict[str, str]:
    if not actions_service(request).retry(item):
        raise HTTPException(404, f"no dead letter {item}")
    return {"id": item, "status": "pending"}


@router.get("/v1/actions/allowlist")
async def get_allowlist(request: Request) -> dict[str, Any]:
    return actions_service(request).allowlist()


@router.put("/v1/actions/allowlist")
async def put_allowlist(request: Request, body: AllowListBody) -> dict[str, Any]:
    try:
        return actions_service(request).set_allowlist(body.targets)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


@router.get("/v1/silences", response_model=list[Silence])
async def list_silences(request: Request, active: bool = False) -> list[Silence]:
    return actions_service(request).silences(active_only=active)


@router.post("/v1/silences", response_model=Silence, status_code=201)
async def create_silence(request: Request) -> Silence:
    try:
        spec = SilenceIn.model_validate(await request.json())
    except ValidationError as exc:
        raise HTTPException(400, describe(exc, root="silence")) from None
    except ValueError as exc:
        raise HTTPException(400, f"body is not JSON: {exc}") from None
    return actions_service(request).add_silence(spec)


@router.get("/v1/silences/{sid}", response_model=Silence)
async def get_silence(request: Request, sid: str) -> Silence:
    s = actions_service(request).silence(sid)
    if s is None:
        raise HTTPException(404, f"no silence {sid}")
    return s


@router.delete("/v1/silences/{sid}", status_code=204)
async def delete_silence(request: Request, sid: str) -> Response:
    if not actions_service(request).delete_silence(sid):
        raise HTTPException(404, f"no silence {sid}")
    return Response(status_code=204)
