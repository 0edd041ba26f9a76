"""The client half of the protocol: one request, one answer, each bounded in time and size, plain or over TLS."""

from __future__ import annotations

import asyncio
from typing import Any

import ssl

from telemetry.collect.zabbix.protocol import NOTSUPPORTED, encode, parse_json, read_frame
from telemetry.collect.zabbix.tls import TlsEnd
from telemetry.config.base import split_hostport

__all__ = ["exchange", "get_value", "request_json"]


async def exchange(address: str, payload: bytes | str | dict[str, Any], timeout: float,
                   max_bytes: int = 16 << 20, tls: TlsEnd | None = None) -> bytes:
    """Send one frame to ``host:port`` and return the answer's payload.

    With ``tls`` the connection is TLS from its first byte, as Zabbix's; a peer
    certificate the CA did not sign, or whose issuer or subject is not the one
    required, fails with ``ssl.SSLError`` (an OSError, as a refused connection).
    """
    host, port = split_hostport(address)

    async def go() -> bytes:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls.context if tls else None)
        try:
            if tls is not None:
                why = tls.refusal(writer.get_extra_info("peercert"))
                if why is not None:
                    raise ssl.SSLCertVerificationError(1, why)  # (errno, text): str() is then the text alone
            writer.write(encode(payload))
            await writer.drain()
            return (await read_frame(reader, max_bytes)).payload
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:  # a reset, or a TLS peer that closed without close_notify: the answer is in already
                pass

    return await asyncio.wait_for(go(), timeout)


async def get_value(address: str, key: str, timeout: float,
                    tls: TlsEnd | None = None) -> tuple[str | None, str | None]:
    """A passive check as ``zabbix_get`` makes it: ``(value, None)`` or ``(None, reason)``."""
    text = (await exchange(address, key, timeout, tls=tls)).decode("utf-8", errors="replace")
    if text == NOTSUPPORTED or text.startswith(NOTSUPPORTED + "\0"):
        return None, text[len(NOTSUPPORTED) + 1:] or "Not supported by Zabbix Agent"
    return text.split("\0", 1)[0], None


async def request_json(address: str, doc: dict[str, Any], timeout: float,
                       tls: TlsEnd | None = None) -> dict[str, Any]:
    return parse_json(await exchange(address, doc, timeout, tls=tls))
