"""Dead letters as the API sees them: list, show, replay, delete.

Replaying publishes the record, as it arrived, back onto the topic it came
from (with a ``replayed`` header), so it goes through the same stages again;
the operator does that once the cause is fixed (a pattern, a bound, a bug).
Run on the event loop; the store's work goes to a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson

from telemetry.bus import Bus, OutMessage, all_durable
from telemetry.deadletters.refusals import REFUSED_TOPIC_PREFIX
from telemetry.deadletters.store import DeadLetter, DeadLetterStore

#: Characters of a dead letter's content shown in a listing.
PREVIEW = 200


def _text(value: bytes) -> tuple[str, str]:
    """The content for people: (``json``|``text``|``base64``, the text)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(value).decode()
    try:
        orjson.loads(value)
        return "json", text
    except orjson.JSONDecodeError:
        return "text", text


def summary(d: DeadLetter) -> dict[str, Any]:
    kind, text = _text(d.value[: PREVIEW * 4])
    return {"id": d.id, "time": d.time, "stage": d.stage, "topic": d.topic, "reason": d.reason, "error": d.error,
            "size": d.size, "replays": d.replays, "replayed_at": d.replayed_at,
            "preview": text[:PREVIEW] if kind != "base64" else f"({d.size} bytes, not text)"}


class NotReplayable(ValueError):
    """A dead letter an input refused at the door: there is no topic to send it back to."""


class DeadLetterService:
    def __init__(self, store: DeadLetterStore, bus: Bus) -> None:
        self.store = store
        self.bus = bus

    async def list(self, limit: int = 100, stage: str | None = None, topic: str | None = None,
                   reason: str | None = None) -> list[dict[str, Any]]:
        found = await asyncio.to_thread(self.store.list, limit, stage, topic, reason)
        return [summary(d) for d in found]

    async def show(self, letter: str) -> dict[str, Any] | None:
        d = await asyncio.to_thread(self.store.get, letter)
        if d is None:
            return None
        kind, text = _text(d.value)
        return {**summary(d), "encoding": kind, "value": text,
                "key": d.key.decode("utf-8", "replace") if d.key else None}

    async def replay(self, letter: str) -> dict[str, Any] | None:
        """Publish it again where it came from; None when there is no such dead letter."""
        d = await asyncio.to_thread(self.store.get, letter)
        if d is None:
            return None
        if d.topic.startswith(REFUSED_TOPIC_PREFIX):
            raise NotReplayable(f"{letter} was refused at its input ({d.topic[len(REFUSED_TOPIC_PREFIX):]}) before "
                                "reaching the bus: nothing reads it again (resend it from its source once fixed)")
        receipt = await self.bus.publish(d.topic, [OutMessage(value=d.value, key=d.key, headers={"replayed": d.id})])
        await all_durable([receipt])
        await asyncio.to_thread(self.store.mark_replayed, letter)
        return {"id": d.id, "topic": d.topic, "replayed": True}

    async def delete(self, letter: str) -> bool:
        return await asyncio.to_thread(self.store.delete, letter)
