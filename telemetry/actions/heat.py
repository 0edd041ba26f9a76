"""Heat scaling-policy signals, with our own cooldown per policy.

Two forms, as Aodh supports them:

* the pre-signed ``alarm_url`` Heat hands out for ``OS::Heat::ScalingPolicy``
  (an EC2-signed URL on heat-api-cfn, ``.../v1/signal/<arn>?...&Signature=...``):
  recognised by its shape or written ``heat+http(s)://...``; posted as is;
* the ``signal_url`` (heat-api ``.../resources/<policy>/signal``), written
  ``trust+http(s)://...`` as in Aodh: posted with a Keystone token from
  ``actions.heat.keystone``.

The cooldown is enforced by the dispatcher when it queues the signal
(``cooldown_key`` names the policy), so it survives restarts and a flapping
alarm cannot scale a group up and down every evaluation.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from telemetry.actions.base import Notifier, aodh_body
from telemetry.actions.models import SendOutcome
from telemetry.actions.security import UNTRUSTED


def is_presigned(target: str) -> bool:
    parts = urlsplit(target)
    return "/signal/" in parts.path and "Signature" in parse_qs(parts.query)


def cooldown_key(target: str) -> str:
    """The policy a URL signals: the URL without its query (the signature changes, the policy does not)."""
    url = target.split("+", 1)[1] if "+" in target.split("://", 1)[0] else target
    parts = urlsplit(url)
    return f"heat:{parts.netloc}{parts.path}"


class HeatNotifier(Notifier):
    kind = "heat"

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._token: tuple[str, float] | None = None

    @classmethod
    def claims(cls, target: str) -> bool:
        return target.startswith(("heat+http://", "heat+https://", "trust+http://", "trust+https://")) or (
            target.startswith(("http://", "https://")) and is_presigned(target))

    async def token(self) -> str | SendOutcome:
        if self._token and self._token[1] > time.time() + 60:
            return self._token[0]
        ks = self.ctx.config.heat.keystone
        if ks is None:
            return SendOutcome.permanent("a signal_url needs actions.heat.keystone credentials")
        body = ks.password_auth()
        # Keystone is the operator's own endpoint (actions.heat.keystone), not the alarm's target: not vetted.
        reset = UNTRUSTED.set(False)
        try:
            out = await self.ctx.http.post_json(ks.auth_url.rstrip("/") + "/auth/tokens", body, signed=False)
        finally:
            UNTRUSTED.reset(reset)
        if not out.ok:
            out.error = f"keystone: {out.error}"
            return out
        resp = out.extra["response"]
        tok = resp.headers.get("x-subject-token", "")
        if not tok:
            return SendOutcome.permanent("keystone returned no X-Subject-Token")
        try:
            from telemetry.timeutil import parse_timestamp

            expires = parse_timestamp(resp.json()["token"]["expires_at"]).timestamp()
        except (KeyError, ValueError, TypeError):
            expires = time.time() + 600
        self._token = (tok, expires)
        return tok

    async def send(self, target: str, transitions: list[dict[str, Any]], delivery_id: str) -> SendOutcome:
        headers = {}
        if target.startswith("trust+"):
            tok = await self.token()
            if isinstance(tok, SendOutcome):
                return tok
            headers["X-Auth-Token"] = tok
        out = await self.ctx.http.post_json(self.url(target), aodh_body(transitions[-1]), delivery_id=delivery_id,
                                            headers=headers, signed=False)
        if out.status == 401 and headers:
            self._token = None  # expired or revoked: fetch a new one on the retry
            out.retry = True
        return out
