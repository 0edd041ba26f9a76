"""Trigger endpoints: list and show triggers, acknowledge a problem with a comment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from telemetry.api.auth import require_token
from telemetry.rules.triggers.engine import SEVERITIES

router = APIRouter(tags=["triggers"])


class Acknowledge(BaseModel):
    message: str = Field(min_length=1, description="The operator's comment")
    user: str = ""


def _engine(request: Request) -> Any:
    rules = request.app.state.runtime.services.get("rules")
    if rules is None:
        raise HTTPException(503, "the rule engine is not running")
    return rules


@router.get("/v1/triggers")
def list_triggers(request: Request, host: str | None = None, status: str | None = None,
                  min_severity: str | None = None) -> list[dict[str, Any]]:
    rules = _engine(request)
    now = rules.triggers.clock()
    if min_severity is not None and min_severity not in SEVERITIES:
        raise HTTPException(400, f"unknown severity {min_severity!r} (one of {', '.join(SEVERITIES)})")
    floor = SEVERITIES.index(min_severity) if min_severity else 0
    out = [t.to_dict(now) for t in rules.triggers.triggers.values()
           if (host is None or t.host == host) and (status is None or t.value == status.upper())
           and SEVERITIES.index(t.severity) >= floor]
    out.sort(key=lambda d: (d["status"] != "PROBLEM", -SEVERITIES.index(d["severity"]), d["host"], d["name"]))
    return out


@router.get("/v1/triggers/{trigger_id}")
def get_trigger(request: Request, trigger_id: str) -> dict[str, Any]:
    rules = _engine(request)
    t = rules.triggers.triggers.get(trigger_id)
    if t is None:
        raise HTTPException(404, f"trigger {trigger_id} not found")
    return t.to_dict(rules.triggers.clock())


@router.post("/v1/triggers/{trigger_id}/acknowledge", dependencies=[Depends(require_token)])
async def acknowledge(request: Request, trigger_id: str, body: Acknowledge) -> dict[str, Any]:
    rules = _engine(request)
    if trigger_id not in rules.triggers.triggers:
        raise HTTPException(404, f"trigger {trigger_id} not found")
    t = await rules.acknowledge(trigger_id, body.message, body.user)
    return t.to_dict(rules.triggers.clock())
