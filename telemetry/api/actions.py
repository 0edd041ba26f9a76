"""Actions API: delivery log, dead letters, allow-list and silences.

Read endpoints are open like the rest of the API; everything that changes
what gets sent (silences, allow-list, retrying a dead letter) needs a token.
"""

from __future__ import annotations

from typing import Any

# Handlers are async on purpose: they share the SQLite connection with the dispatcher on the event loop.
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ValidationError

from telemetry.actions.models import DeliveryRow, Silence, SilenceIn
from telemetry.api.auth import require_token

router = APIRouter(tags=["actions"])


def _actions(request: Request) -> Any:
    svc = request.app.state.runtime.services.get("actions")
    if svc is None:
        raise HTTPException(503, "the actions stage is not running")
    return svc


class AllowListBody(BaseModel):
    targets: list[str]


@router.get("/v1/actions/deliveries", response_model=list[DeliveryRow])
async def deliveries(request: Request, limit: int = Query(100, ge=1, le=10000), status: str | None = None,
               alarm_id: str | None = None) -> list[DeliveryRow]:
    """Newest first: every attempt and every decision not to send, with redacted targets."""
    return _actions(request).outbox.deliveries(limit, status, alarm_id)


@router.get("/v1/actions/dead-letters")
async def dead_letters(request: Request, limit: int = Query(100, ge=1, le=10000)) -> list[dict[str, Any]]:
    from telemetry.actions.security import redact

    rows = _actions(request).outbox.dead_letters(limit)
    for r in rows:
        r["target"] = redact(r["target"])
    return rows


@router.post("/v1/actions/dead-letters/{item}/retry", dependencies=[Depends(require_token)], status_code=202)
async def retry_dead_letter(request: Request, item: str) -> dict[str, str]:
    svc = _actions(request)
    with svc.outbox.tx():
        ok = svc.outbox.requeue(item)
    if not ok:
        raise HTTPException(404, f"no dead letter {item}")
    svc.wake.set()
    return {"id": item, "status": "pending"}


@router.get("/v1/actions/allowlist")
async def get_allowlist(request: Request) -> dict[str, Any]:
    svc = _actions(request)
    return {"targets": svc.outbox.get_setting("allowlist", []), "configured": svc.config.allowed_targets}


@router.put("/v1/actions/allowlist", dependencies=[Depends(require_token)])
async def put_allowlist(request: Request, body: AllowListBody) -> dict[str, Any]:
    svc = _actions(request)
    try:
        targets = svc.set_allowlist(body.targets)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return {"targets": targets, "configured": svc.config.allowed_targets}


@router.get("/v1/silences", response_model=list[Silence])
async def list_silences(request: Request, active: bool = False) -> list[Silence]:
    return _actions(request).outbox.silences(active_only=active)


@router.post("/v1/silences", response_model=Silence, status_code=201, dependencies=[Depends(require_token)])
async def create_silence(request: Request) -> Silence:
    try:
        spec = SilenceIn.model_validate(await request.json())
    except ValidationError as exc:
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'silence'}: {e['msg']}" for e in exc.errors())
        raise HTTPException(400, text) from None
    except ValueError as exc:
        raise HTTPException(400, f"body is not JSON: {exc}") from None
    svc = _actions(request)
    with svc.outbox.tx():
        return svc.outbox.add_silence(spec)


@router.get("/v1/silences/{sid}", response_model=Silence)
async def get_silence(request: Request, sid: str) -> Silence:
    s = _actions(request).outbox.get_silence(sid)
    if s is None:
        raise HTTPException(404, f"no silence {sid}")
    return s


@router.delete("/v1/silences/{sid}", status_code=204, dependencies=[Depends(require_token)])
async def delete_silence(request: Request, sid: str) -> Response:
    svc = _actions(request)
    with svc.outbox.tx():
        ok = svc.outbox.delete_silence(sid)
    if not ok:
        raise HTTPException(404, f"no silence {sid}")
    return Response(status_code=204)
