"""Keystone tokens (``X-Auth-Token``) validated as keystonemiddleware's ``auth_token`` does, and cached.

The service authenticates itself with its own password (``POST /v3/auth/tokens``,
the ``X-Subject-Token`` it gets back is the service token), then validates each
caller's token with ``GET /v3/auth/tokens``: ``X-Auth-Token`` the service
token, ``X-Subject-Token`` the caller's. 200 gives the token's project, user
and roles; 404 (or 401) means the token is not valid. Results are cached by
the token's SHA-256 until the token expires or ``cache_ttl`` passes, whichever
is first, so a busy API asks Keystone once per token, not once per request.
A Keystone that cannot be reached is a 503, never an open door.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

from telemetry.api.principal import Principal
from telemetry.config.core import KeystoneAuthConfig
from telemetry.timeutil import parse_timestamp

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

#: Tokens remembered at once; the oldest go first when it is full.
CACHE_SIZE = 10_000


class KeystoneUnavailable(Exception):
    """Keystone did not answer, or refused the service's own credentials."""


class KeystoneValidator:
    def __init__(self, config: KeystoneAuthConfig) -> None:
        self.config = config
        self.base = config.auth_url.rstrip("/")
        self._client: httpx.AsyncClient | None = None
        self._service: tuple[str, float] | None = None
        self._lock = asyncio.Lock()
        #: sha256(token) -> (principal or None for an invalid token, valid until)
        self._cache: dict[bytes, tuple[Principal | None, float]] = {}
        self.validations = 0

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=self.config.timeout, verify=self.config.ca_file or True)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _service_token(self, renew: bool = False) -> str:
        import httpx

        async with self._lock:
            if self._service and not renew and self._service[1] > time.time() + 30:
                return self._service[0]
            try:
                r = await self.client.post(self.base + "/auth/tokens", json=self.config.password_auth())
            except httpx.HTTPError as exc:
                raise KeystoneUnavailable(f"keystone at {self.base}: {type(exc).__name__}") from None
            token = r.headers.get("x-subject-token", "")
            if r.status_code != 201 or not token:
                raise KeystoneUnavailable(f"keystone refused api.keystone's credentials (HTTP {r.status_code})")
            self._service = (token, _expiry(r.json(), time.time() + 600))
            return token

    async def validate(self, token: str) -> Principal | None:
        """The caller behind ``token``; None when Keystone says it is not valid."""
        key = hashlib.sha256(token.encode()).digest()
        now = time.time()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        import httpx

        self.validations += 1
        for attempt in range(2):
            service = await self._service_token(renew=attempt > 0)
            try:
                r = await self.client.get(self.base + "/auth/tokens",
                                          headers={"X-Auth-Token": service, "X-Subject-Token": token})
            except httpx.HTTPError as exc:
                raise KeystoneUnavailable(f"keystone at {self.base}: {type(exc).__name__}") from None
            if r.status_code == 401 and attempt == 0:
                continue  # our service token expired or was revoked: get another and ask again
            break
        if r.status_code in (401, 403, 404):
            self._remember(key, None, now + min(self.config.cache_ttl, 30))
            return None
        if r.status_code != 200:
            raise KeystoneUnavailable(f"keystone answered HTTP {r.status_code} to a token validation")
        data = r.json()
        who = self._principal(data.get("token") or {})
        self._remember(key, who, min(now + self.config.cache_ttl, _expiry(data, now + self.config.cache_ttl)))
        return who

    def _principal(self, tok: dict[str, Any]) -> Principal:
        roles = {str(r.get("name", "")).lower() for r in tok.get("roles") or [] if isinstance(r, dict)}
        project = tok.get("project") or {}
        user = tok.get("user") or {}
        admin = bool(roles & {r.lower() for r in self.config.admin_roles})
        read_only = bool(roles) and roles <= {r.lower() for r in self.config.reader_roles}
        scope = "admin" if admin else "read" if read_only else "write"
        return Principal(name=f"keystone:{user.get('name') or user.get('id') or '?'}", scope=scope,
                         project_id=None if admin else str(project.get("id") or "") or None,
                         user_id=user.get("id"), scoped=not admin)

    def _remember(self, key: bytes, who: Principal | None, until: float) -> None:
        if len(self._cache) >= CACHE_SIZE:
            for old in list(self._cache)[: CACHE_SIZE // 10]:
                del self._cache[old]
        self._cache[key] = (who, until)


def _expiry(body: Any, default: float) -> float:
    try:
        return parse_timestamp(body["token"]["expires_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return default
