"""The actions stage as the API sees it: delivery log, dead letters, allow-list, silences.

The API calls these methods and never opens the outbox's transactions or
wakes the delivery loop itself, so the dispatcher alone decides how its
outbox is kept consistent. Every method runs on the event loop: the outbox
shares one SQLite connection with the dispatcher there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telemetry.actions.models import DeliveryRow, Silence, SilenceIn
from telemetry.actions.security import redact, redact_actions

if TYPE_CHECKING:
    from telemetry.actions.dispatch import ActionDispatcher


class ActionsService:
    def __init__(self, dispatcher: ActionDispatcher) -> None:
        self._d = dispatcher

    def deliveries(self, limit: int, status: str | None = None, alarm_id: str | None = None) -> list[DeliveryRow]:
        """Newest first: every attempt and every decision not to send, with redacted targets."""
        return self._d.outbox.deliveries(limit, status, alarm_id)

    def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        rows = self._d.outbox.dead_letters(limit)
        for r in rows:
            r["target"] = redact(r["target"])
            if isinstance(r.get("transition"), dict):  # it lists every action of the alarm
                r["transition"] = redact_actions(r["transition"], ("actions",))
        return rows

    def retry(self, item: str) -> bool:
        """Put a dead letter back in the queue; False when there is no such item."""
        with self._d.outbox.tx():
            ok = self._d.outbox.requeue(item)
        if ok:
            self._d.wake.set()
        return ok

    def allowlist(self) -> dict[str, Any]:
        return {"targets": self._d.outbox.get_setting("allowlist", []),
                "configured": self._d.config.allowed_targets}

    def set_allowlist(self, targets: list[str]) -> dict[str, Any]:
        """Replace the API-managed part of the allow-list; ValueError names an entry that is not a host or CIDR."""
        return {"targets": self._d.set_allowlist(targets), "configured": self._d.config.allowed_targets}

    async def refused_target(self, target: str) -> str | None:
        """Why an action set through the API would never be called, or None when it would."""
        n = self._d.notifier_for(target)
        if n is None:
            return f"no notifier handles {redact(target)} (http(s)://, mailto:, pagerduty://, slack+https://, ...)"
        return await self._d.allowlist.check(n.url(target)) if n.http_target else None

    def silences(self, active_only: bool = False) -> list[Silence]:
        return self._d.outbox.silences(active_only=active_only)

    def add_silence(self, spec: SilenceIn) -> Silence:
        with self._d.outbox.tx():
            return self._d.outbox.add_silence(spec)

    def silence(self, sid: str) -> Silence | None:
        return self._d.outbox.get_silence(sid)

    def delete_silence(self, sid: str) -> bool:
        with self._d.outbox.tx():
            return self._d.outbox.delete_silence(sid)
