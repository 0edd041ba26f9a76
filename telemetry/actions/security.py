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
import fnmatch
import hashlib
import hmac
import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_PARAMS = re.compile(r"(?i)^(signature|awsaccesskeyid|token|x-auth-token|key|api_key|apikey|secret|password|"
                           r"routing_key|sig|access_token|auth)$")
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
    query = urlencode([(k, "***" if SECRET_PARAMS.match(k) else v) for k, v in parse_qsl(parts.query, True)], safe="*")
    path = HOOK_PATH.sub(lambda m: m.group(1) + "***", parts.path)
    return urlunsplit(parts._replace(netloc=netloc, query=query, path=path))


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

    async def check(self, url: str) -> str | None:
        """None when ``url`` may be requested, else the reason it may not."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return f"not a URL: {redact(url)}"
        if not host:
            return f"no host in {redact(url)}"
        host = host.lower()
        if _endpoint(url) in self.trusted or any(fnmatch.fnmatchcase(host, n) for n in self.names):
            return None
        try:
            addrs = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except OSError as exc:
                return f"cannot resolve {host}: {exc}"
            addrs = sorted({str(i[4][0]) for i in infos})
        bad = [a for a in addrs if not self._addr_ok(a)]
        if bad:
            why = f" ({self.why_strict})" if self.why_strict and not all(ipaddress.ip_address(a).is_global for a in bad) else ""
            return (f"{host} ({', '.join(bad)}) is not in the actions allow-list{why}: add it to actions.allowed_targets "
                    "or PUT /v1/actions/allowlist")
        return None


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
