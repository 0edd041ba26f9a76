"""Who may call the API, checked before any route runs or any body is read.

Static tokens (``api.tokens``) and, with ``api.keystone``, Keystone tokens
(telemetry/api/keystone.py) are both accepted; the caller is left in the
request's scope (telemetry/api/principal.py) for routes that scope by project.

An ASGI middleware rather than a FastAPI dependency: a dependency runs after
FastAPI has read and parsed the body, so an anonymous 100 MB POST used to be
buffered and decoded before its 401 (the daemon grew 200 MB per request). Here
the token (Bearer, ``X-Auth-Token`` or the HTTP Basic password, which is what
Ceilometer's http:// publisher sends) is checked from the headers alone, and
the body is refused with 413 from its ``Content-Length`` or, for chunked
uploads, as soon as the bytes received pass ``api.max_body_bytes``.

Tokens are compared by SHA-256 digest in constant time, so the configuration
may hold only the digests. Scopes nest: ``read`` may GET, ``write`` may also
change data, ``admin`` may also change what gets sent (allow-list, dead
letters, silences).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import HTTPException, Request
from prometheus_client import Counter

from telemetry.api.keystone import KeystoneUnavailable, KeystoneValidator
from telemetry.api.principal import PRINCIPAL_KEY, Principal, principal
from telemetry.config.core import ApiConfig
from telemetry.metrics import REGISTRY

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_REFUSED = Counter(
    "telemetry_api_requests_refused",
    "API requests refused before a route ran: unauthorized (no or unknown token), forbidden (scope too low), "
    "too_large (body over api.max_body_bytes); connections closed: over_cap (api.max_connections were open), "
    "header_timeout (no request head within api.header_timeout)",
    ["reason"], registry=REGISTRY,
)

#: Paths whose changes need the admin scope: what gets sent, and what the daemon gave up on.
ADMIN_PREFIXES = ("/v1/actions/allowlist", "/v1/actions/dead-letters", "/v1/dead-letters", "/v1/silences")
#: Paths a project-scoped Keystone token may not use at all without an admin role: they span every project.
#: /gnocchi is not scoped per project yet: a project token gets 403 there rather than every project's resources.
OPERATOR_PREFIXES = (*ADMIN_PREFIXES, "/v1/actions", "/v1/triggers", "/v1/ceilometer", "/gnocchi")
OPERATOR_POSTS = frozenset({("/v1/events", "POST")})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The web console's page, files and login check: reachable without a token so the page can ask for one.
CONSOLE_SHELL = frozenset({"/ui", "/ui/", "/ui/session"})
CONSOLE_ASSETS = "/ui/static/"


def needed_scope(method: str, path: str) -> str:
    """The scope a request needs: reads ``read``, changes ``write``, changes under ADMIN_PREFIXES ``admin``."""
    if method.upper() in READ_METHODS:
        return "read"
    return "admin" if path.startswith(ADMIN_PREFIXES) else "write"


def presented_token(headers: dict[bytes, bytes]) -> str:
    """The token from ``Authorization: Bearer``, ``X-Auth-Token`` or the password of ``Authorization: Basic``."""
    header = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return ""
    return headers.get(b"x-auth-token", b"").decode("latin-1").strip()


class TokenTable:
    """The configured tokens as digests; ``find`` compares against every one, so timing says nothing."""

    def __init__(self, config: ApiConfig) -> None:
        self.entries = [(t.digest(), Principal(t.name or f"api.tokens[{i}]", t.scope))
                        for i, t in enumerate(config.tokens)]
        for i, t in enumerate(config.tokens):
            if t.token is not None:
                log.warning("api.tokens[%d]%s is written in plain text: write its digest instead "
                            "(sha256: followed by the output of printf %%s TOKEN | sha256sum)",
                            i, f" ({t.name})" if t.name else "")

    def __bool__(self) -> bool:
        return bool(self.entries)

    def find(self, presented: str) -> Principal | None:
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for known, who in self.entries:
            if hmac.compare_digest(digest, known):
                found = who
        return found


async def _answer(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    body = orjson.dumps({"error_message": {"faultstring": text}})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Token, scope and body size, from the headers, before the application sees the request."""

    def __init__(self, app: ASGIApp, config: ApiConfig) -> None:
        self.app = app
        self.tokens = TokenTable(config)
        self.keystone = KeystoneValidator(config.keystone) if config.keystone else None
        self.open_paths = frozenset(p for p in config.open_paths if not p.endswith("/"))
        self.open_prefixes = tuple(p for p in config.open_paths if p.endswith("/"))
        self.max_body = config.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        path = scope.get("path", "")
        if (self.tokens or self.keystone) and path not in self.open_paths and not path.startswith(self.open_prefixes):
            presented = presented_token(headers)
            who = self.tokens.find(presented)
            if who is None and self.keystone is not None and presented:
                try:
                    who = await self.keystone.validate(presented)
                except KeystoneUnavailable as exc:
                    log.warning("API: cannot validate a token: %s", exc)
                    await _answer(send, 503, "the token cannot be validated now: Keystone is unreachable")
                    return
            if path in CONSOLE_SHELL or path.startswith(CONSOLE_ASSETS):
                # The console's page and files hold no data; its session check reports the caller instead of refusing.
                if who is not None:
                    scope[PRINCIPAL_KEY] = who
                await self.app(scope, receive, send)
                return
            if who is None:
                API_REFUSED.labels("unauthorized").inc()
                await _answer(send, 401, "a valid API token is required (Authorization: Bearer, X-Auth-Token, "
                                         "or the password of HTTP Basic)",
                              [(b"www-authenticate", b'Bearer, Basic realm="telemetry"')])
                return
            needed = needed_scope(scope.get("method", "GET"), path)
            if who.scoped and (path.startswith(OPERATOR_PREFIXES) or (path, scope.get("method")) in OPERATOR_POSTS):
                needed = "admin"  # the operator's side: every project's deliveries, triggers, ingestion doors
            if not who.may(needed):
                API_REFUSED.labels("forbidden").inc()
                await _answer(send, 403, f"this token's scope is {who.scope}; {scope.get('method')} {path} "
                                         f"needs {needed}")
                return
            scope[PRINCIPAL_KEY] = who
        length = headers.get(b"content-length", b"")
        try:
            declared = int(length) if length else 0
        except ValueError:
            declared = 0
        if declared > self.max_body:
            API_REFUSED.labels("too_large").inc()
            await _answer(send, 413, f"request body of {declared} bytes is over api.max_body_bytes ({self.max_body})")
            return
        await self._bounded(scope, receive, send)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a receive that stops at the limit (chunked bodies declare no length).

        The 413 is raised as an HTTPException from inside the body read: FastAPI
        lets those through its body parsing and the app's handler answers it.
        """
        received = 0
        limit = self.max_body

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    API_REFUSED.labels("too_large").inc()
                    raise HTTPException(413, f"request body is over api.max_body_bytes ({limit})",
                                        headers={"Connection": "close"})
            return message

        await self.app(scope, limited_receive, send)


def publisher_trusted(request: Request) -> bool:
    """True when a token authenticated the request: an authenticated Ceilometer publisher may send unsigned samples.

    Ceilometer's http:// publisher sends the ``user:password@`` of its URL as
    HTTP Basic; the middleware accepted its password as a token. With no
    tokens configured nobody is authenticated, and samples must be signed
    when ``telemetry_secret`` is set.
    """
    return principal(request) is not None
