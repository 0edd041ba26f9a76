"""Counters of the Zabbix listeners, poller and active-check client (names start with telemetry_zabbix_)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from telemetry.metrics import REGISTRY

FRAMES_REJECTED = Counter(
    "telemetry_zabbix_frames_rejected", "ZBXD requests refused, by listener and reason (bad_header, too_large, ...)",
    ["listener", "reason"], registry=REGISTRY,
)
CONNECTIONS = Counter(
    "telemetry_zabbix_connections", "Connections to a Zabbix listener, by result (accepted, over_cap, not_allowed)",
    ["listener", "result"], registry=REGISTRY,
)
OPEN_CONNECTIONS = Gauge(
    "telemetry_zabbix_open_connections", "Connections a Zabbix listener holds now", ["listener"], registry=REGISTRY,
)
VALUES = Counter(
    "telemetry_zabbix_values", "Item values handled, by component and result (processed, failed, notsupported)",
    ["component", "result"], registry=REGISTRY,
)
POLLS = Counter(
    "telemetry_zabbix_polls", "Passive checks sent to Zabbix agents, by result (ok, notsupported, error)",
    ["result"], registry=REGISTRY,
)
