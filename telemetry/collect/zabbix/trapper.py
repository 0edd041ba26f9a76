"""The trapper: ``zabbix_sender`` data, and the server side of active checks, on port 10051.

Requests, as a Zabbix server takes them:

- ``sender data`` (zabbix_sender, zabbix_utils.Sender) and ``agent data``
  (an agent in active mode): each value becomes a sample (meter = key,
  resource = host). A value that is not a number, or an entry without host
  or key, is counted as failed and the rest are still taken; the answer is
  Zabbix's ``processed: N; failed: M; total: T; seconds spent: S``.
- ``active checks``: the item list for the asking host, from the role
  templates its ``host_metadata`` names (else ``active_templates``).

The answer goes out only after the bus holds the samples: a sender that got
``success`` can forget its values (at-least-once). Sample ids derive from
host, key and clock, so a retry of values sent with their clock (as agents
and ``zabbix_sender -T`` send them) is deduplicated downstream.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from telemetry.bus import Bus
from telemetry.bus.records import publish_records
from telemetry.collect.checks.samples import item_sample, numeric
from telemetry.collect.zabbix import metrics as m
from telemetry.collect.zabbix.listener import ZabbixListener
from telemetry.collect.zabbix.tls import server_tls
from telemetry.collect.zabbix.protocol import FrameError, encode, parse_json
from telemetry.config.zabbix import ZabbixSource
from telemetry.models import Sample

if TYPE_CHECKING:
    from telemetry.collect.checks.templates import ItemCheck

log = logging.getLogger(__name__)

__all__ = ["TrapperListener", "duration_text"]


def duration_text(seconds: float) -> str:
    """An interval as Zabbix writes delays: ``30s``, ``5m``, ``1h``."""
    s = int(seconds)
    for unit, size in (("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return f"{max(1, s)}s"


class TrapperListener(ZabbixListener):
    name = "source.zabbix_trapper"

    def __init__(self, cfg: ZabbixSource, bus: Bus, *, bus_format: str = "json",
                 template_paths: list[str] | None = None, default_interval: float = 60.0) -> None:
        assert cfg.trapper is not None
        super().__init__(cfg.trapper, max_connections=cfg.max_connections, idle_timeout=cfg.idle_timeout,
                         max_frame_bytes=cfg.max_frame_bytes, allowed_peers=cfg.allowed_peers,
                         accept=cfg.tls.accept, tls=server_tls(cfg.tls))
        self.bus = bus
        self.bus_format = bus_format
        self.active_templates = cfg.active_templates
        self.template_paths = template_paths or []
        self.default_interval = default_interval
        self.processed = 0
        self.failed = 0
        #: Roles of hosts that asked for active checks, stamped on their agent data so the server binds them.
        self.host_roles: dict[str, list[str]] = {}

    async def respond(self, payload: bytes, peer: str) -> bytes:
        try:
            doc = parse_json(payload)
        except FrameError as exc:
            self.refuse(exc.reason, str(exc), peer)
            return encode({"response": "failed", "info": str(exc)})
        request = doc.get("request")
        if request in ("sender data", "agent data"):
            return await self._data(doc, peer)
        if request == "active checks":
            return await self._active_checks(doc, peer)
        self.refuse("bad_request", f"unsupported request {request!r}", peer)
        return encode({"response": "failed", "info": f"unsupported request {request!r}"})

    # -- values --------------------------------------------------------------------
    def _sample(self, entry: Any, now: float, source: str) -> Sample | str:
        """A sample, or the reason the entry failed."""
        if not isinstance(entry, dict):
            return "entry is not an object"
        host, key = entry.get("host"), entry.get("key")
        if not isinstance(host, str) or not host or not isinstance(key, str) or not key:
            return "entry needs a host and a key"
        if entry.get("state") == 1:  # an active agent reporting a key it could not evaluate
            return f"{host}:{key} is not supported by the agent: {str(entry.get('value'))[:80]}"
        volume = numeric(entry.get("value"))
        if volume is None:
            return f"value {str(entry.get('value'))[:40]!r} of {host}:{key} is not a number"
        clock = entry.get("clock")
        try:
            ts = float(clock) + int(entry.get("ns") or 0) / 1e9 if clock is not None else now
            when = datetime.fromtimestamp(ts, timezone.utc)
        except (TypeError, ValueError, OverflowError, OSError):
            return f"clock {clock!r} of {host}:{key} is not a Unix time"
        roles = self.host_roles.get(host) if source == "zabbix-agent" else None
        return item_sample(host, key, volume, when, source, (roles[0] if len(roles) == 1 else roles) if roles else None)

    async def _data(self, doc: dict[str, Any], peer: str) -> bytes:
        started = time.perf_counter()
        data = doc.get("data")
        if not isinstance(data, list):
            self.refuse("bad_request", f"{doc.get('request')} without a data list", peer)
            return encode({"response": "failed", "info": "data must be a list"})
        source = "zabbix-sender" if doc["request"] == "sender data" else "zabbix-agent"
        samples: list[Sample] = []
        reasons: list[str] = []
        now = time.time()
        for entry in data:
            s = self._sample(entry, now, source)
            if isinstance(s, str):
                reasons.append(s)
            else:
                samples.append(s)
        if samples:
            await publish_records(self.bus, samples, self.bus_format)
        failed = len(reasons)
        if reasons:
            log.info("%s: %d of %d values from %s failed, first: %s", self.name, failed, len(data), peer, reasons[0])
        self.processed += len(samples)
        self.failed += failed
        m.VALUES.labels(component=self.name, result="processed").inc(len(samples))
        m.VALUES.labels(component=self.name, result="failed").inc(failed)
        spent = time.perf_counter() - started
        info = f"processed: {len(samples)}; failed: {failed}; total: {len(data)}; seconds spent: {spent:.6f}"
        return encode({"response": "success", "info": info})

    # -- active checks -------------------------------------------------------------
    def _roles(self, metadata: str) -> list[str]:
        words = [w for w in re.split(r"[\s,;]+", metadata) if w]
        return words or list(self.active_templates)

    async def _active_checks(self, doc: dict[str, Any], peer: str) -> bytes:
        host = doc.get("host")
        if not isinstance(host, str) or not host:
            self.refuse("bad_request", "active checks request without a host", peer)
            return encode({"response": "failed", "info": "host is required"})
        wanted = self._roles(str(doc.get("host_metadata") or ""))
        roles, templates = await asyncio.to_thread(self._load, wanted)
        self.host_roles[host] = roles
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        for t in templates:
            for it in t:
                if it.discovery is not None or it.key in seen:
                    continue  # prototypes are expanded by our own agent's scheduler, not handed out
                seen.add(it.key)
                items.append({"key": it.key, "key_orig": it.key, "itemid": len(items) + 1,
                              "delay": duration_text(it.interval or self.default_interval),
                              "lastlogsize": 0, "mtime": 0})
        log.info("%s: %d active checks for %s (%s)", self.name, len(items), host, ", ".join(roles) or "no role")
        return encode({"response": "success", "data": items, "refresh_unsupported": 600})

    def _load(self, wanted: list[str]) -> tuple[list[str], list[list[ItemCheck]]]:
        """The metadata words that name templates (others, like "Linux", are ignored) and their items."""
        # Imported here: the templates pull in every cloud check, which the daemon's start need not wait for.
        from telemetry.collect.checks.templates import load_templates, template_names

        have = set(template_names(self.template_paths))
        roles = [r for r in wanted if r in have]
        templates, problems = load_templates(roles, self.template_paths) if roles else ([], [])
        for p in problems:
            log.error("%s: %s", self.name, p)
        return roles, [t.items for t in templates]

    def details(self) -> dict[str, Any]:
        return {**super().details(), "values_processed": self.processed, "values_failed": self.failed}
