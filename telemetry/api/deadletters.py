"""``/v1/dead-letters``: records a stage refused, with their reason; read, replay or delete them.

Reads need no token (as the rest of the API's reads); replay and delete do.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from telemetry.api.services import dead_letter_service
from telemetry.deadletters.service import NotReplayable

router = APIRouter(tags=["dead letters"])


@router.get("/v1/dead-letters", summary="Dead letters, newest first")
async def list_dead_letters(request: Request, limit: int = Query(100, ge=1, le=10_000),
                            stage: str | None = None, topic: str | None = None,
                            reason: str | None = Query(None, description="A reason or its prefix, e.g. invalid:")
                            ) -> list[dict[str, Any]]:
    return await dead_letter_service(request).list(limit, stage, topic, reason)


@router.get("/v1/dead-letters/{letter_id}", summary="One dead letter, its content included")
async def show_dead_letter(request: Request, letter_id: str) -> dict[str, Any]:
    found = await dead_letter_service(request).show(letter_id)
    if found is None:
        raise HTTPException(404, f"no dead letter {letter_id}")
    return found


@router.post("/v1/dead-letters/{letter_id}/replay", status_code=202,
             summary="Publish the record again on the topic it came from")
async def replay_dead_letter(request: Request, letter_id: str) -> dict[str, Any]:
    try:
        found = await dead_letter_service(request).replay(letter_id)
    except NotReplayable as exc:
        raise HTTPException(409, str(exc)) from None
    if found is None:
        raise HTTPException(404, f"no dead letter {letter_id}")
    return found


@router.delete("/v1/dead-letters/{letter_id}", status_code=204)
async def delete_dead_letter(request: Request, letter_id: str) -> Response:
    if not await dead_letter_service(request).delete(letter_id):
        raise HTTPException(404, f"no dead letter {letter_id}")
    return Response(status_code=204)
