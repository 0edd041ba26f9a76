"""HTTP delivery: one attempt, classified for the retry policy, and the backoff schedule.

Transient failures (connection errors, timeouts, 5xx, 429) are retried with
exponential backoff and full jitter, honouring ``Retry-After``; any other 4xx
means the request itself is wrong (bad routing key, revoked hook) and will
not improve by repetition, so it goes straight to the dead-letter list.
"""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import Counter, Gauge, Histogram

from telemetry import __version__
from telemetry.actions.models import SendOutcome
from telemetry.actions.security import REFUSED, UNTRUSTED, AllowList, redact, redact_text, sign
from telemetry.metrics import REGISTRY
from telemetry.timeutil import utcnow

if TYPE_CHECKING:  # httpx is imported when the first action is sent: it costs daemon start-up time
    import httpx

DELIVERIES = Counter("telemetry_actions_deliveries", "Delivery attempts of alarm actions, by notifier and outcome",
                     ["notifier", "outcome"], registry=REGISTRY)
DEAD_LETTERS = Counter("telemetry_actions_dead_letters", "Alarm actions given up after the last attempt",
                       ["notifier"], registry=REGISTRY)
SUPPRESSED = Counter("telemetry_actions_suppressed", "Alarm actions not sent, by reason (silenced, inhibited, ...)",
                     ["reason"], registry=REGISTRY)
PENDING = Gauge("telemetry_actions_outbox_pending", "Alarm actions waiting in the outbox", registry=REGISTRY)
LATENCY = Histogram("telemetry_actions_delivery_seconds", "From the transition's timestamp to its delivery",
                    ["notifier"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=REGISTRY)

USER_AGENT = f"openstack-telemetry/{__version__}"


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


def backoff(attempt: int, initial: float, maximum: float, hint: float | None = None) -> float:
    """Delay before attempt ``attempt + 1``: full jitter over an exponential ceiling (AWS's advice).

    A server's Retry-After is a floor: retrying earlier only earns another 429.
    """
    ceiling = min(maximum, initial * (2 ** max(0, attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling)
    if hint is not None:
        delay = max(delay, min(hint, maximum))
    return delay


def classify(resp: httpx.Response) -> SendOutcome:
    code = resp.status_code
    if 200 <= code < 300:
        return SendOutcome.success(code)
    text = resp.text[:200].strip()
    if code == 429 or code >= 500 or code == 408:
        return SendOutcome.transient(f"HTTP {code}: {text}", code, retry_after(resp.headers.get("retry-after")))
    return SendOutcome.permanent(f"HTTP {code} (not retried): {text}", code)


class Http:
    """The shared httpx client: timeouts, no redirects (a redirect could leave the allow-list), optional signing."""

    def __init__(self, timeout: float, signing_secret: str | None = None,
                 signature_header: str = "X-Telemetry-Signature", allowlist: AllowList | None = None) -> None:
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._guarded: httpx.AsyncClient | None = None
        self.allowlist = allowlist
        self.secret = signing_secret
        self.signature_header = signature_header

    @property
    def client(self) -> httpx.AsyncClient:
        """Made on first use, so a daemon that never sends does not pay for importing httpx."""
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), follow_redirects=False,
                                             headers={"User-Agent": USER_AGENT})
        return self._client

    @property
    def guarded(self) -> httpx.AsyncClient:
        """The client for actions of API-made alarms: each connection re-checked against the allow-list."""
        if self._guarded is None:
            import httpx

            from telemetry.actions.pinning import guarded_client

            assert self.allowlist is not None, "an Http sending untrusted targets needs the allow-list"
            self._guarded = guarded_client(self.allowlist, timeout=httpx.Timeout(self.timeout), follow_redirects=False,
                                           headers={"User-Agent": USER_AGENT})
        return self._guarded

    async def close(self) -> None:
        for c in (self._client, self._guarded):
            if c is not None:
                await c.aclose()

    async def post_json(self, url: str, body: Any, *, delivery_id: str = "", headers: dict[str, str] | None = None,
                        signed: bool = True) -> SendOutcome:
        data = orjson.dumps(body)
        h = {"Content-Type": "application/json"}
        if delivery_id:
            # Receivers can drop a redelivery after a crash between their 2xx and our bookkeeping.
            h["X-Telemetry-Delivery"] = delivery_id
            h["X-OpenStack-Request-Id"] = f"req-{delivery_id}"
        if signed and self.secret:
            h[self.signature_header] = sign(data, self.secret)
        h.update(headers or {})
        return await self.send("POST", url, content=data, headers=h)

    async def send(self, method: str, url: str, **kwargs: Any) -> SendOutcome:
        import httpx

        client = self.guarded if UNTRUSTED.get() and self.allowlist is not None else self.client
        try:
            resp = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            text = redact_text(f"{type(exc).__name__}: {exc}", [url]) or type(exc).__name__
            if str(exc).startswith(REFUSED):  # the name now resolves outside the allow-list: retrying will not help
                return SendOutcome.permanent(text)
            return SendOutcome.transient(text)
        out = classify(resp)
        out.extra["response"] = resp
        return out


def describe(target: str) -> str:
    return redact(target)
