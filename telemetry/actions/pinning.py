"""Connections for actions set through the API: resolved, checked, and made to the checked address only.

The allow-list is checked when an alarm is created and when its transition
is queued, but the HTTP client resolves the host again when it connects. A
name whose DNS answer changes in between (DNS rebinding: public the first
time, 169.254.169.254 the second) would slip through. The network backend
here makes every connection of the guarded client go through the allow-list
itself: it resolves the host, checks each address, and connects to those
addresses, never to a fresh lookup. TLS still verifies the certificate for
the host name, since httpcore passes the URL's host as the server name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpcore

from telemetry.actions.security import REFUSED, AllowList, TargetRefused

if TYPE_CHECKING:
    import httpx



class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's default backend, with every TCP connection vetted by the allow-list first."""

    def __init__(self, allowlist: AllowList) -> None:
        self.allowlist = allowlist
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        if self.allowlist.named(host, port):
            return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            addresses = await self.allowlist.vetted(host)
        except TargetRefused as exc:
            raise httpcore.ConnectError(REFUSED + str(exc)) from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError(REFUSED + "unix sockets are not reachable from alarm actions")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_client(allowlist: AllowList, **options: Any) -> httpx.AsyncClient:
    """An httpx client whose connections go through GuardedBackend (no proxy from the environment: it would connect
    for us, unchecked)."""
    import httpx

    transport = httpx.AsyncHTTPTransport()
    pool = transport._pool
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    # httpx does not take a network backend; the pool is rebuilt around the same TLS context with ours.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=pool._ssl_context, max_connections=pool._max_connections,
        max_keepalive_connections=pool._max_keepalive_connections, keepalive_expiry=pool._keepalive_expiry,
        network_backend=GuardedBackend(allowlist))
    return httpx.AsyncClient(transport=transport, trust_env=False, **options)
