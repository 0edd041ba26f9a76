"""What the query commands share: talking to a running daemon's API and printing tables.

Query commands (meter-list, statistics, search, alarm-list, ...) go through the
HTTP API, as the ceilometer and aodh clients did, so they work the same against
the local all-in-one and a remote server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from telemetry.cli.common import fail

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_URL = "http://127.0.0.1:8777"


def api_options(func: F) -> F:
    """``--url`` and ``--token`` (env TELEMETRY_URL, TELEMETRY_TOKEN)."""
    func = click.option("--token", envvar="TELEMETRY_TOKEN", default=None,
                        help="Bearer token for the API (env: TELEMETRY_TOKEN).")(func)
    func = click.option("--url", envvar="TELEMETRY_URL", default=DEFAULT_URL, show_default=True,
                        help="Base URL of the telemetry API (env: TELEMETRY_URL).")(func)
    return func


class ApiClient:
    """A thin httpx client whose errors become one readable line and exit code 1."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        import httpx  # here, not at import: commands that never call the API start without it

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.url = url

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the telemetry API at {self.url}: {exc} (is `telemetry run` or `server` up? see --url)", 1)
        if r.status_code >= 400:
            try:
                body = r.json()
                msg = body.get("error_message", {}).get("faultstring") or body.get("detail") or r.text
            except (ValueError, AttributeError):
                msg = r.text
            fail(f"{method} {path}: HTTP {r.status_code}: {msg}", 1)
        if r.status_code == 204 or not r.content:
            return None
        return r.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})
