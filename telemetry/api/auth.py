"""Bearer-token checks (``api.tokens``): for mutating endpoints and for Ceilometer's http:// publisher."""

from __future__ import annotations

import base64
import hmac

from fastapi import HTTPException, Request


def _matches(presented: str, tokens: list[str]) -> bool:
    """Constant-time comparison against every configured token."""
    return bool(presented) and any(hmac.compare_digest(presented.encode(), t.encode()) for t in tokens)


def token_presented(request: Request) -> bool:
    """True when the request carries a configured token (Bearer or X-Auth-Token), or no tokens are configured."""
    tokens = request.app.state.tokens
    if not tokens:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        presented = request.headers.get("x-auth-token", "")
    return _matches(presented, tokens)


def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless a configured token is presented.

    With no tokens configured the API is open, as on a loopback-only all-in-one.
    """
    if token_presented(request):
        return
    raise HTTPException(status_code=401, detail="a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})


def publisher_trusted(request: Request) -> bool:
    """True when a configured API token came as Bearer, X-Auth-Token or the Basic password.

    Ceilometer's http:// publisher sends ``user:password@`` from its URL as
    HTTP Basic auth, so a token there authenticates it. 401 when tokens are
    configured and none matches; False when no tokens are configured.
    """
    tokens: list[str] = request.app.state.tokens
    if not tokens:
        return False
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    presented = ""
    if scheme.lower() == "bearer":
        presented = value.strip()
    elif scheme.lower() == "basic":
        try:
            presented = base64.b64decode(value.strip()).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            presented = ""
    else:
        presented = request.headers.get("x-auth-token", "")
    if _matches(presented, tokens):
        return True
    raise HTTPException(status_code=401, detail="a valid API token is required (Bearer, or the password in the publisher URL)",
                        headers={"WWW-Authenticate": "Basic"})
