"""Bearer-token check for mutating endpoints (``api.tokens``)."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request


def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless a configured token is presented.

    With no tokens configured the API is open, as on a loopback-only all-in-one.
    Tokens are compared in constant time.
    """
    tokens = request.app.state.tokens
    if not tokens:
        return
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        presented = request.headers.get("x-auth-token", "")
    if presented and any(hmac.compare_digest(presented.encode(), t.encode()) for t in tokens):
        return
    raise HTTPException(status_code=401, detail="a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
