"""``log://`` actions: a dry run that writes the Aodh body to the daemon's log."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from telemetry.actions.base import Notifier, aodh_body
from telemetry.actions.models import SendOutcome

log = logging.getLogger("telemetry.actions.dryrun")


class LogNotifier(Notifier):
    kind = "log"
    groupable = True
    http_target = False

    @classmethod
    def claims(cls, target: str) -> bool:
        return target.startswith("log:")

    async def send(self, target: str, transitions: list[dict[str, Any]], delivery_id: str) -> SendOutcome:
        for t in transitions:
            log.info("alarm action %s (dry run): %s", target, orjson.dumps(aodh_body(t)).decode())
        return SendOutcome.success()
