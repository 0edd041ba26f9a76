"""Signatures, the target allow-list and secret redaction.

Alarms created through the API are user input: their action URLs must not
turn the server into a proxy to internal addresses (the metadata service,
the database, the message bus). Targets are therefore checked against an
allow-list by host name *and* by every address the name resolves to.
Secrets live in action URLs (pre-signed Heat URLs, Slack hook paths,
PagerDuty routing keys, passwords): anything written to a log or to the
delivery log goes through ``redact`` first.
"""

from __future__ import annotations

import asyncio
import contextvars
import fnmatch
import hashlib
import hmac
import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_PARAMS = re.compile(r"(?i)^(signature|awsaccesskeyid|token|x-auth-token|key|api_key|apikey|secret|password|"
                           r"routing_key|sig|access_token|auth)$")
#: True while a delivery of an untrusted (API-made) alarm runs: Http.send then uses the guarded client.
UNTRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("telemetry_untrusted_target", default=False)
#: How a refusal at connect time starts its message, so the sender can tell it from a network error.
REFUSED = "refused at connect time: "
# Slack/Mattermost/Rocket.Chat put the credential in the path after /hooks/.
HOOK_PATH = re.compile(r"(?i)(/(?:hooks|services)/)(.+)$")


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact body bytes, as GitHub and Gitea sign webhooks."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    """What a receiver does with the header; constant-time comparison."""
    return hmac.compare_digest(sign(body, secret), header or "")


def redact(target: str) -> str:
    """A target safe to log: passwords, secret query parameters and hook tokens become ``***``."""
    if not target:
        return target
    if target.startswith("pagerduty://"):
        return "pagerduty://***"
    try:
        parts = urlsplit(target)
    except ValueError:
        return "***"
    if not parts.netloc:
        return target  # mailto:, log:// have nothing secret
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = parts.query
    pairs = parse_qsl(query, True)
    if any(SECRET_PARAMS.match(k) for k, _ in pairs):  # otherwise as written: a log line should match the request
        query = urlencode([(k, "***" if SECRET_PARAMS.match(k) else v) for k, v in pairs], safe="*")
    path = HOOK_PATH.sub(lambda m: m.group(1) + "***", parts.path)
    return urlunsplit(parts._replace(netloc=netloc, query=query, path=path))


#: A URL inside free text (a log line, an exception's message), up to the first blank or quote.
URL_IN_TEXT = re.compile(r"""(?i)\b[a-z][a-z0-9+.-]*://[^\s"'<>]+""")


def redact_urls(text: str) -> str:
    """Every URL in ``text`` redacted: for log lines written by code that knows nothing of secrets (httpx, aiohttp)."""
    if "://" not in text:
        return text
    return URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)


def redact_actions(alarm: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """An alarm (or a history detail) as the API returns it: every action target in ``fields`` redacted.

    The targets hold Heat's signed URLs, hook paths, routing keys and trust
    passwords; whoever may read alarms need not be able to call them.
    """
    out = dict(alarm)
    for field in fields:
        if isinstance(out.get(field), list):
            out[field] = [redact(t) if isinstance(t, str) else t for t in out[field]]
    return out


def restore_redacted(targets: list[str], previous: Iterable[str]) -> list[str]:
    """Targets of an edit with each redacted form an alarm's read returned put back to its secret original.

    ``aodh alarm update`` reads the alarm and writes it back whole: without
    this, every update would overwrite the real targets with their ``***``
    forms. Only a target equal to the redaction of one the alarm already has
    is restored, so an edit cannot borrow another alarm's secret.
    """
    by_shown = {redact(p): p for p in previous if redact(p) != p}
    return [by_shown.get(t, t) for t in targets]


def redact_text(text: str, targets: Iterable[str]) -> str:
    """Error messages (httpx includes the URL) with every known target replaced by its redacted form."""
    for t in targets:
        plain = t.split("+", 1)[1] if re.match(r"^[a-z]+\+", t) else t
        for s in {t, plain}:
            if s and s in text:
                text = text.replace(s, redact(s))
    return text


def _endpoint(url: str) -> str:
    """``scheme://host:port`` of a URL, the port filled in: what a trusted endpoint is compared by."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return ""
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def this_host_addresses() -> set[str]:
    """Addresses of this host's interfaces: a webhook "on this host" may use any of them."""
    import psutil

    found: set[str] = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                found.add(str(ipaddress.ip_address(a.address.split("%", 1)[0])))
    return found


class AllowList:
    """Host names (exact or ``*.domain``) and networks (CIDR) that user-set targets may reach.

    With no entries only public (global) addresses are allowed, never
    loopback, private, link-local (169.254.169.254) or reserved ones.
    ``local`` also allows this host's own addresses (the all-in-one on
    loopback without tokens, where whoever creates alarms is on this host
    anyway); ``trusted`` endpoints (Heat's from ``actions.heat``: scheme,
    host and port) are allowed without being listed twice.
    """

    def __init__(self, entries: Iterable[str] = (), *, local: bool = False, trusted: Iterable[str] = (),
                 why_strict: str = "") -> None:
        self.local = local
        self.trusted = {_endpoint(t) for t in trusted if t}
        self.why_strict = why_strict
        self._own: set[str] | None = None
        self.set(entries)

    def set(self, entries: Iterable[str]) -> None:
        self.entries = [e.strip() for e in entries if e and e.strip()]
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: list[str] = []
        for e in self.entries:
            try:
                self.networks.append(ipaddress.ip_network(e, strict=False))
            except ValueError:
                self.names.append(e.lower())

    @staticmethod
    def validate(entries: Iterable[str]) -> list[str]:
        out = []
        for e in entries:
            e = e.strip()
            if not e:
                continue
            try:
                ipaddress.ip_network(e, strict=False)
            except ValueError:
                if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9\-.]*[A-Za-z0-9])?", e):
                    raise ValueError(f"not a host name, *.domain or network: {e!r}") from None
            out.append(e)
        return out

    def _addr_ok(self, addr: str) -> bool:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
        if any(ip in n for n in self.networks):
            return True
        if self.local:
            if self._own is None:
                self._own = this_host_addresses()
            if ip.is_loopback or str(ip) in self._own:
                return True
        if self.entries:
            return False
        return ip.is_global

    def named(self, host: str, port: int | None = None) -> bool:
        """True when the operator allowed this host by name (``*.domain``) or as a trusted endpoint."""
        host = host.lower()
        if port is not None and any(t.endswith(f"://{host}:{port}") for t in self.trusted):
            return True
        return any(fnmatch.fnmatchcase(host, n) for n in self.names)

    async def vetted(self, host: str) -> list[str]:
        """Every address ``host`` resolves to, once each is checked; TargetRefused naming the ones that are not.

        Both the check when an alarm is created and the connection made when
        its action is sent use this: the sender connects to these addresses
        and no other, so a name that resolves elsewhere the second time
        (DNS rebinding) cannot reach what the first answer hid.
        """
        host = host.lower()
        try:
            addrs = [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise TargetRefused(f"cannot resolve {host}: {exc}") from None
            addrs = sorted({str(i[4][0]) for i in infos})
        bad = [a for a in addrs if not self._addr_ok(a)]
        if bad:
            why = f" ({self.why_strict})" if self.why_strict and not all(ipaddress.ip_address(a).is_global for a in bad) else ""
            raise TargetRefused(f"{host} ({', '.join(bad)}) is not in the actions allow-list{why}: add it to "
                                "actions.allowed_targets or PUT /v1/actions/allowlist")
        return addrs

    async def check(self, url: str) -> str | None:
        """None when ``url`` may be requested, else the reason it may not."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return f"not a URL: {redact(url)}"
        if not host:
            return f"no host in {redact(url)}"
        if _endpoint(url) in self.trusted or self.named(host):
            return None
        try:
            await self.vetted(host)
        except TargetRefused as exc:
            return str(exc)
        return None


class TargetRefused(ValueError):
    """A target's host resolves to an address the allow-list does not allow (or does not resolve)."""


def allowlist_for(api_host: str, api_tokens: int, allowed: Iterable[str], heat_endpoints: Iterable[str]) -> AllowList:
    """The allow-list a daemon applies to alarm actions set through its API, logged once at start.

    The all-in-one default (API on loopback, no tokens) lets such alarms reach
    webhooks on this host, so the README's ``aodh`` example and a local Heat
    work out of the box: only someone on this host can create them. A server
    that listens beyond loopback or requires tokens keeps the list strict.
    """
    import logging

    try:
        loopback = ipaddress.ip_address(api_host).is_loopback
    except ValueError:
        loopback = api_host == "localhost"
    reasons = ([] if loopback else [f"the API listens on {api_host}"]) + (["api.tokens is set"] if api_tokens else [])
    why = " and ".join(reasons)
    al = AllowList(allowed, local=not reasons, trusted=heat_endpoints,
                   why_strict=f"targets on this host are allowed only when the API is on loopback without tokens; "
                              f"here {why}" if why else "")
    log = logging.getLogger(__name__)
    if reasons:
        log.info("actions: alarms created through the API may reach public addresses, actions.allowed_targets "
                 "and Heat's endpoints only (%s)", why)
    else:
        log.info("actions: alarms created through the API may also reach webhooks on this host "
                 "(the API is on loopback without tokens)")
    return al
