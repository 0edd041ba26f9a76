"""Generic webhooks: Aodh's body by default, Alertmanager webhook v4 on request.

``http(s)://...`` posts Aodh's body (``actions.webhook_format: alertmanager``
switches the default); ``alertmanager+http(s)://...`` always posts the
Alertmanager v4 body, so Alertmanager receivers and chat bridges
(alertmanager-discord, prometheus-msteams, ...) work unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Any

from telemetry.actions.base import Notifier, aodh_body
from telemetry.actions.models import SendOutcome, labels_of

ZERO_TIME = "0001-01-01T00:00:00Z"


def _ts(t: dict[str, Any]) -> str:
    return str(t.get("timestamp") or "").replace("+00:00", "Z")


def alertmanager_body(transitions: list[dict[str, Any]], group_labels: dict[str, str], link: Any) -> dict[str, Any]:
    alerts = []
    for t in transitions:
        labels = labels_of(t)
        firing = t.get("current") == "alarm"
        alerts.append({
            "status": "firing" if firing else "resolved",
            "labels": labels,
            "annotations": {"summary": t.get("reason", ""), "previous": str(t.get("previous", "")),
                            "state": str(t.get("current", ""))},
            "startsAt": _ts(t) if firing else str(t.get("alarm_since") or _ts(t)),
            "endsAt": ZERO_TIME if firing else _ts(t),
            "generatorURL": link(t),
            "fingerprint": hashlib.sha256(str(sorted(labels.items())).encode()).hexdigest()[:16],
        })
    common = dict(alerts[0]["labels"]) if alerts else {}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    common_ann = dict(alerts[0]["annotations"]) if alerts else {}
    for a in alerts[1:]:
        common_ann = {k: v for k, v in common_ann.items() if a["annotations"].get(k) == v}
    return {
        "version": "4",
        "groupKey": "{}:" + str(sorted(group_labels.items())),
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "telemetry",
        "groupLabels": group_labels,
        "commonLabels": common,
        "commonAnnotations": common_ann,
        "externalURL": link({}) if transitions else "",
        "alerts": alerts,
    }


class WebhookNotifier(Notifier):
    kind = "webhook"

    @classmethod
    def claims(cls, target: str) -> bool:
        return target.startswith(("http://", "https://", "alertmanager+http://", "alertmanager+https://"))

    def alertmanager(self, target: str) -> bool:
        return target.startswith("alertmanager+") or self.ctx.config.webhook_format == "alertmanager"

    def can_group(self, target: str) -> bool:
        return self.alertmanager(target)  # Aodh's body describes exactly one alarm

    async def send(self, target: str, transitions: list[dict[str, Any]], delivery_id: str) -> SendOutcome:
        url = self.url(target)
        if self.alertmanager(target):
            group = {k: labels_of(transitions[0]).get(k, "") for k in self.ctx.config.group_by}
            body = alertmanager_body(transitions, group, self.ctx.link)
            return await self.ctx.http.post_json(url, body, delivery_id=delivery_id)
        return await self.ctx.http.post_json(url, aodh_body(transitions[0]), delivery_id=delivery_id)
