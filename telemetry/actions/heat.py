"""Heat scaling-policy signals, with our own cooldown per policy.

Two forms, as Aodh supports them:

* the pre-signed ``alarm_url`` Heat hands out for ``OS::Heat::ScalingPolicy``
  (an EC2-signed URL on heat-api-cfn, ``.../v1/signal/<arn>?...&Signature=...``):
  recognised by its shape or written ``heat+http(s)://...``; posted as is;
* the ``signal_url`` (heat-api ``.../resources/<policy>/signal``), written
  ``trust+http(s)://[TRUST_ID[:delete]@]...`` as in Aodh: posted with a Keystone
  token (keystoneauth1) of the service user in ``actions.heat.keystone``, scoped
  to the trust when the URL names one and to ``project_name`` otherwise.

The cooldown is enforced by the dispatcher when it queues the signal
(``cooldown_key`` names the policy), so it survives restarts and a flapping
alarm cannot scale a group up and down every evaluation.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from telemetry.actions.base import Notifier, aodh_body
from telemetry.actions.keystone import KeystoneTokens
from telemetry.actions.models import SendOutcome


def is_presigned(target: str) -> bool:
    parts = urlsplit(target)
    return "/signal/" in parts.path and "Signature" in parse_qs(parts.query)


def cooldown_key(target: str) -> str:
    """The policy a URL signals: the URL without its query (the signature changes, the policy does not)."""
    url = target.split("+", 1)[1] if "+" in target.split("://", 1)[0] else target
    parts = urlsplit(url)
    return f"heat:{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"  # without a trust: it is not part of the policy


def trust_of(target: str) -> tuple[str | None, str]:
    """``trust+http://TRUST[:delete]@heat/p`` -> ``("TRUST", "http://heat/p")``: the trust, and the URL posted
    (never with the trust in it: httpx would send it as Basic credentials)."""
    parts = urlsplit(target.split("+", 1)[1])
    if "@" not in parts.netloc:
        return None, parts.geturl()
    userinfo, host = parts.netloc.rsplit("@", 1)
    return unquote(userinfo.split(":", 1)[0]) or None, urlunsplit(parts._replace(netloc=host))


class HeatNotifier(Notifier):
    kind = "heat"

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._tokens: KeystoneTokens | None = None

    @classmethod
    def claims(cls, target: str) -> bool:
        return target.startswith(("heat+http://", "heat+https://", "trust+http://", "trust+https://")) or (
            target.startswith(("http://", "https://")) and is_presigned(target))

    async def token(self, trust_id: str | None) -> str | SendOutcome:
        if self._tokens is None:
            ks = self.ctx.config.heat.keystone
            if ks is None:
                return SendOutcome.permanent("a signal_url needs actions.heat.keystone credentials")
            self._tokens = KeystoneTokens(ks, self.ctx.config.timeout)
        return await self._tokens.token(trust_id)

    async def send(self, target: str, transitions: list[dict[str, Any]], delivery_id: str) -> SendOutcome:
        headers = {}
        url = self.url(target)
        trust_id = None
        if target.startswith("trust+"):
            trust_id, url = trust_of(target)
            tok = await self.token(trust_id)
            if isinstance(tok, SendOutcome):
                return tok
            headers["X-Auth-Token"] = tok
        out = await self.ctx.http.post_json(url, aodh_body(transitions[-1]), delivery_id=delivery_id,
                                            headers=headers, signed=False)
        if out.status == 401 and headers and self._tokens is not None:
            self._tokens.invalidate(trust_id)  # expired or revoked: fetch a new one on the retry
            out.retry = True
        return out
