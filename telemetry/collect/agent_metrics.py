"""The agent's own figures on /metrics (``telemetry_agent_*``).

They answer the operator's questions about a shipper: is it reading, is it
keeping up (lag per file), is the bus taking batches, is the spool filling.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from telemetry.metrics import REGISTRY

LINES_READ = Counter("telemetry_agent_lines_read", "Lines read, by source", ["source"], registry=REGISTRY)
BYTES_READ = Counter("telemetry_agent_bytes_read", "Bytes read, by source", ["source"], registry=REGISTRY)
LINES_REPAIRED = Counter(
    "telemetry_agent_lines_repaired",
    "Lines shipped with a repair: truncated, invalid_utf8, nul_bytes",
    ["reason"],
    registry=REGISTRY,
)
BATCHES_SHIPPED = Counter(
    "telemetry_agent_batches_shipped", "Batches the bus acknowledged, direct or from the spool", ["via"],
    registry=REGISTRY,
)
RECORDS_SHIPPED = Counter(
    "telemetry_agent_records_shipped", "Records the bus acknowledged", registry=REGISTRY
)
SHIP_FAILURES = Counter(
    "telemetry_agent_ship_failures", "Publish attempts that failed or timed out", registry=REGISTRY
)
SPOOL_BATCHES = Gauge("telemetry_agent_spool_batches", "Batches waiting in the on-disk spool", registry=REGISTRY)
SPOOL_BYTES = Gauge("telemetry_agent_spool_bytes", "Bytes held by the on-disk spool", registry=REGISTRY)
FILES_OPEN = Gauge("telemetry_agent_files_open", "Log files currently open", registry=REGISTRY)
FILE_LAG = Gauge(
    "telemetry_agent_file_lag_bytes", "Bytes of a file not yet acknowledged by the bus", ["path"],
    registry=REGISTRY,
)
SYSLOG_DROPPED = Counter(
    "telemetry_agent_syslog_dropped", "UDP syslog messages dropped because the agent was overloaded",
    registry=REGISTRY,
)
DATA_LOST = Counter(
    "telemetry_agent_data_lost",
    "Files whose unread rest could not be read any more: truncated with no copy found, or gone before a restart",
    ["reason"], registry=REGISTRY,
)
JOURNALD_ERRORS = Counter(
    "telemetry_agent_journald_errors",
    "Journal input problems: bad_entry (not JSON, no cursor), too_large (skipped), journalctl_exit (restarted)",
    ["reason"], registry=REGISTRY,
)
