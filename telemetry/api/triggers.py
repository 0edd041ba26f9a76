"""Trigger endpoints: list and show triggers, acknowledge a problem with a comment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from telemetry.api.services import rules_service
from telemetry.rules.service import UnknownSeverity

router = APIRouter(tags=["triggers"])


class Acknowledge(BaseModel):
    message: str = Field(min_length=1, description="The operator's comment")
    user: str = ""


@router.get("/v1/triggers")
def list_triggers(request: Request, host: str | None = None, status: str | None = None,
                  min_severity: str | None = None) -> list[dict[str, Any]]:
    try:
        return rules_service(request).triggers(host, status, min_severity)
    except UnknownSeverity as exc:
        raise HTTPException(400, str(exc)) from None


@router.get("/v1/triggers/{trigger_id}")
def get_trigger(request: Request, trigger_id: str) -> dict[str, Any]:
    found = rules_service(request).trigger(trigger_id)
    if found is None:
        raise HTTPException(404, f"trigger {trigger_id} not found")
    return found


@router.post("/v1/triggers/{trigger_id}/acknowledge")
async def acknowledge(request: Request, trigger_id: str, body: Acknowledge) -> dict[str, Any]:
    found = await rules_service(request).acknowledge(trigger_id, body.message, body.user)
    if found is None:
        raise HTTPException(404, f"trigger {trigger_id} not found")
    return found
