"""The agent's passive-check listener: a Zabbix server, proxy or ``zabbix_get`` polls our agent.

Requests are a key in a ZBXD frame (or a bare line, as old servers send);
the answer is the value as text, or ``ZBX_NOTSUPPORTED\\0<reason>``. Zabbix 7's
JSON form (``{"request":"passive checks","data":[{"key":...}]}``) is answered
in kind. Keys are evaluated off the event loop: ``net.tcp.port`` or a large
``vfs.file.cksum`` may take a while and must not hold up the other sources.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from telemetry.collect.checks.items import ItemCollector, NotSupported, format_value
from telemetry.collect.zabbix import metrics as m
from telemetry.collect.zabbix.listener import ZabbixListener
from telemetry.collect.zabbix.tls import server_tls
from telemetry.collect.zabbix.protocol import NOTSUPPORTED, FrameError, encode
from telemetry.config.zabbix import ZabbixSource

log = logging.getLogger(__name__)

__all__ = ["PassiveListener", "answer_key"]


def answer_key(items: ItemCollector, key: str) -> tuple[str, str | None]:
    """``(value, None)`` or ``("", reason)`` for one key."""
    try:
        return format_value(items.get(key)), None
    except NotSupported as exc:
        return "", str(exc) or "Unsupported item key."


class PassiveListener(ZabbixListener):
    name = "source.zabbix_passive"
    allow_plain = True

    def __init__(self, cfg: ZabbixSource, items: ItemCollector) -> None:
        assert cfg.passive is not None
        super().__init__(cfg.passive, max_connections=cfg.max_connections, idle_timeout=cfg.idle_timeout,
                         max_frame_bytes=cfg.max_frame_bytes, allowed_peers=cfg.allowed_peers,
                         accept=cfg.tls.accept, tls=server_tls(cfg.tls))
        self.items = items
        self.timeout = cfg.check_timeout

    async def _evaluate(self, key: str) -> tuple[str, str | None]:
        try:
            value, error = await asyncio.wait_for(asyncio.to_thread(answer_key, self.items, key), self.timeout)
        except TimeoutError:
            value, error = "", f"Timeout while processing item after {self.timeout:g} seconds."
        m.VALUES.labels(component=self.name, result="notsupported" if error else "processed").inc()
        return value, error

    async def respond(self, payload: bytes, peer: str) -> bytes:
        text = payload.decode("utf-8", errors="replace").strip()
        if text.startswith("{"):
            return await self._respond_json(payload)
        if not text:
            raise FrameError("bad_request", "empty item key")
        value, error = await self._evaluate(text)
        return encode(f"{NOTSUPPORTED}\0{error}" if error is not None else value)

    async def _respond_json(self, payload: bytes) -> bytes:
        try:
            doc = orjson.loads(payload)
            entries = doc["data"] if doc.get("request") == "passive checks" else None
            keys = [str(e["key"]) for e in entries] if isinstance(entries, list) else None
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            keys = None
        if not keys:
            raise FrameError("bad_request", "JSON request is not a 'passive checks' request with data[].key")
        out: list[dict[str, Any]] = []
        for key in keys:
            value, error = await self._evaluate(key)
            out.append({"error": error} if error is not None else {"value": value})
        return encode({"version": "6.0.0", "variant": 1, "data": out})

    def details(self) -> dict[str, Any]:
        return {**super().details(), "keys": len(self.items.keys)}
