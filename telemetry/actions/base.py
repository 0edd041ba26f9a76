"""What every notifier shares: the context it runs in and the interface the workers call."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from telemetry.actions.delivery import Http
from telemetry.actions.models import SendOutcome, alarm_value, labels_of
from telemetry.config.rules import ActionsConfig


@dataclass
class Context:
    config: ActionsConfig
    http: Http
    #: The link shown in messages for a transition (dashboard or the alarm in our API).
    link: Callable[[dict[str, Any]], str]


def aodh_body(t: dict[str, Any]) -> dict[str, Any]:
    """Exactly what Aodh's REST notifier posts, so Heat and existing receivers accept it."""
    return {
        "alarm_name": t.get("alarm_name"),
        "alarm_id": t.get("alarm_id"),
        "severity": t.get("severity"),
        "previous": t.get("previous"),
        "current": t.get("current"),
        "reason": t.get("reason", ""),
        "reason_data": t.get("reason_data") or {},
    }


def summary(t: dict[str, Any]) -> str:
    """One readable line: ``[CRITICAL] cpu_high is alarm on compute-1 (value 97.5): reason``."""
    labels = labels_of(t)
    where = f" on {labels['host']}" if labels.get("host") else ""
    value = alarm_value(t)
    val = f" (value {value})" if value is not None else ""
    return f"[{str(t.get('severity', '')).upper()}] {t.get('alarm_name')} is {t.get('current')}{where}{val}: " \
           f"{t.get('reason', '')}".rstrip(": ")


class Notifier(abc.ABC):
    """Turns one transition, or a group of them, into one delivery to ``target``."""

    kind: ClassVar[str]
    #: Whether several transitions can share one message (Alertmanager, chat, mail, log).
    groupable: ClassVar[bool] = False
    #: Whether the target is a URL the allow-list must check.
    http_target: ClassVar[bool] = True

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @classmethod
    @abc.abstractmethod
    def claims(cls, target: str) -> bool:
        """Whether this notifier handles ``target`` (by scheme, or by shape for Heat URLs)."""

    def can_group(self, target: str) -> bool:
        return self.groupable

    def url(self, target: str) -> str:
        """The URL actually requested (the target without our ``kind+`` prefix)."""
        return target.split("+", 1)[1] if "+" in target.split("://", 1)[0] else target

    @abc.abstractmethod
    async def send(self, target: str, transitions: list[dict[str, Any]], delivery_id: str) -> SendOutcome:
        """One attempt; never raises for a delivery failure, it returns an SendOutcome."""
