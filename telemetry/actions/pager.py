"""PagerDuty Events API v2: trigger on alarm, resolve on ok.

``pagerduty://ROUTING_KEY`` posts to ``actions.pagerduty.url``. The dedup key
is the alarm and its resource, so repeats of one alarm update one incident
and the ``ok`` transition resolves exactly that incident, while the same
alarm on two resources pages twice. ``insufficient data`` sends nothing:
it neither proves a problem nor its end.
"""

from __future__ import annotations

from typing import Any

from telemetry.actions.base import Notifier, summary
from telemetry.actions.models import SendOutcome, labels_of

SEVERITY = {"critical": "critical", "moderate": "error", "warning": "warning", "low": "warning"}


def dedup_key(t: dict[str, Any]) -> str:
    labels = labels_of(t)
    resource = labels.get("resource_id") or labels.get("host") or ""
    return f"{t.get('alarm_id')}/{resource}"


def pager_body(routing_key: str, t: dict[str, Any], link: str) -> dict[str, Any] | None:
    current = t.get("current")
    if current == "ok":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key(t)}
    if current != "alarm":
        return None
    labels = labels_of(t)
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(t),
        "payload": {
            "summary": summary(t)[:1024],
            "source": labels.get("host") or labels.get("resource_id") or "openstack",
            "severity": SEVERITY.get(str(t.get("severity")), "warning"),
            "timestamp": str(t.get("timestamp")),
            "component": labels.get("meter", ""),
            "group": labels.get("role", ""),
            "class": str(t.get("alarm_type") or ""),
            "custom_details": {"alarm_id": t.get("alarm_id"), "previous": t.get("previous"),
                               "reason": t.get("reason", ""), "reason_data": t.get("reason_data") or {},
                               "labels": labels},
        },
        "links": [{"href": link, "text": "Alarm"}],
        "client": "OpenStack telemetry",
        "client_url": link,
    }


class PagerNotifier(Notifier):
    kind = "pagerduty"
    http_target = False  # the endpoint is the operator's config, not user input

    @classmethod
    def claims(cls, target: str) -> bool:
        return target.startswith("pagerduty://")

    async def send(self, target: str, transitions: list[dict[str, Any]], delivery_id: str) -> SendOutcome:
        t = transitions[0]
        key = target[len("pagerduty://"):].strip("/")
        body = pager_body(key, t, self.ctx.link(t))
        if body is None:
            return SendOutcome.skip(f"PagerDuty has no event for state {t.get('current')!r}")
        return await self.ctx.http.post_json(self.ctx.config.pagerduty.url, body, delivery_id=delivery_id, signed=False)
