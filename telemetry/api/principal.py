"""Who a request comes from, once the API's middleware has checked its token."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request

from telemetry.config.core import SCOPES

#: Where the middleware leaves the caller for routes.
PRINCIPAL_KEY = "telemetry.principal"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a name for the log, a scope, and for a Keystone token its project and user.

    ``scoped`` callers (Keystone tokens without an admin role) see and change
    their own project's data only; static tokens and Keystone admins see all.
    """

    name: str
    scope: str
    project_id: str | None = None
    user_id: str | None = None
    scoped: bool = False

    def may(self, needed: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(needed)


def principal(request: Request) -> Principal | None:
    """The caller the middleware authenticated; None when the API has no tokens."""
    found: Principal | None = request.scope.get(PRINCIPAL_KEY)
    return found


def project_scope(request: Request) -> str | None:
    """The one project this request may see and change, or None for all (static tokens, admins, an open API)."""
    who = principal(request)
    if who is None or not who.scoped:
        return None
    if not who.project_id:
        raise HTTPException(403, "this Keystone token is not scoped to a project")
    return who.project_id
