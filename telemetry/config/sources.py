"""Agent sources: files, notifications, syslog, Ceilometer publishers, Zabbix, checks."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from telemetry.config.base import Duration, HostPort, Section, as_written, check_scheme, written_is_enabled
from telemetry.config.core import BusTLS
from telemetry.config.zabbix import ZabbixPoller, ZabbixSource

#: Where OpenStack and its neighbours log on a stock install. The all-in-one
#: tails whichever of these exist; globs that match nothing cost nothing.
DEFAULT_LOG_GLOBS: dict[str, str] = {
    "nova": "/var/log/nova/*.log",
    "neutron": "/var/log/neutron/*.log",
    "glance": "/var/log/glance/*.log",
    "keystone": "/var/log/keystone/*.log",
    "cinder": "/var/log/cinder/*.log",
    "swift": "/var/log/swift/*.log",
    "heat": "/var/log/heat/*.log",
    "ceilometer": "/var/log/ceilometer/*.log",
    "aodh": "/var/log/aodh/*.log",
    "placement": "/var/log/placement/*.log",
    "octavia": "/var/log/octavia/*.log",
    "rabbitmq": "/var/log/rabbitmq/*.log",
    "mysql": "/var/log/mysql/*.log",
    "httpd": "/var/log/httpd/*.log",
    "apache2": "/var/log/apache2/*.log",
    "libvirt": "/var/log/libvirt/*.log",
    "openvswitch": "/var/log/openvswitch/*.log",
}

#: The parser type for each default folder: oslo.log services parse as ``openstack``.
_DEFAULT_TYPES = {
    "rabbitmq": "rabbitmq",
    "mysql": "mariadb",
    "httpd": "apache",
    "apache2": "apache",
    "libvirt": "libvirt",
    "openvswitch": "ovs",
    "swift": "syslog",
}


class MultilineRule(Section):
    """Logstash-style multiline: lines matching (or, negated, not matching) join an event."""

    pattern: str = Field(description="Regular expression tested on each line")
    negate: bool = Field(False, description="Join the lines that do NOT match")
    what: Literal["previous", "next"] = Field("previous", description="Join to the previous or the next line")


class FileSource(Section):
    """A group of files tailed with the same fields."""

    paths: list[str] = Field(min_length=1, description="Glob patterns; new matching files are picked up while running")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns of files to skip")
    fields: dict[str, str] = Field(default_factory=dict, description="Added to each record: type, component, ...")
    tags: list[str] = Field(default_factory=list, description="Free tags added to each record")
    multiline: Literal["python", "none"] | MultilineRule = Field(
        "python", description="python (oslo tracebacks), none, or a Logstash-style rule"
    )


def _default_multiline(name: str) -> str | MultilineRule:
    if name == "rabbitmq":  # the old "=INFO REPORT====" form spans lines
        return MultilineRule(pattern=r"^(=[A-Z]+ REPORT|\d{4}-\d{2}-\d{2})", negate=True, what="previous")
    return "python" if name not in _DEFAULT_TYPES else "none"


def default_file_sources() -> list[FileSource]:
    return [
        FileSource(
            paths=[glob],
            fields={"type": _DEFAULT_TYPES.get(name, "openstack"), "component": name},
            multiline=_default_multiline(name),
        )
        for name, glob in DEFAULT_LOG_GLOBS.items()
    ]


#: oslo.messaging's notification priorities, the last part of each routing key (``notifications.info``).
OSLO_PRIORITIES = ["audit", "debug", "info", "warn", "error", "critical", "sample"]


class NotificationsSource(Section):
    """OpenStack notifications read from the cloud's RabbitMQ with queues of our own.

    For each topic and priority we declare a durable queue ``<queue_prefix><topic>.<priority>``
    bound to every exchange with routing key ``<topic>.<priority>``: the broker copies each
    notification to it, so OpenStack's own ``notifications.info`` consumers (Ceilometer) keep theirs.
    """

    enabled: bool = Field(True, description="Listen for oslo.messaging notifications (off when the section is not written)")
    url: str = Field("amqp://guest:guest@127.0.0.1:5672/", description="The cloud's transport URL (amqp:// or amqps://)")
    exchanges: list[str] = Field(
        default_factory=lambda: ["nova", "cinder", "neutron", "glance", "heat", "openstack", "ceilometer"],
        description="Exchanges OpenStack services publish notifications on (each service's control_exchange; "
        "ceilometer carries its polling agent's telemetry.polling samples)",
    )
    topics: list[str] = Field(default_factory=lambda: ["notifications"], description="Notification topics")
    priorities: list[str] = Field(
        default_factory=lambda: list(OSLO_PRIORITIES), min_length=1,
        description="Priorities to listen to (the routing key is <topic>.<priority>)",
    )
    queue_prefix: str = Field(
        "telemetry-", min_length=1, description="Our queues are <queue_prefix><topic>.<priority>; never OpenStack's own"
    )
    exchange_durable: bool = Field(
        False, description="Durability of an exchange we must create because no service did yet "
        "(match the services' amqp_durable_queues; existing exchanges are used as they are)",
    )
    prefetch: int = Field(200, ge=1, description="Unacked notifications held at once; also the batch size")
    max_message_bytes: int = Field(
        4 << 20, ge=1024, description="Bigger messages are dead-lettered (reason too_large) instead of parsed"
    )
    meters: list[str] | None = Field(
        None, description="Meter definition files (Ceilometer meters.yaml form); default: the shipped "
        "collectors/meters.yaml; [] makes no samples but Ceilometer's own telemetry.polling/metering ones",
    )
    tls: BusTLS = Field(default_factory=lambda: BusTLS(enabled=False), description="TLS options for amqps:// URLs")

    @field_validator("url")
    @classmethod
    def _amqp(cls, v: str) -> str:
        return check_scheme(v, ("amqp", "amqps"), "notifications")


class SyslogTLS(Section):
    """Syslog over TLS (RFC 5425), as rsyslog's gtls/ossl driver and syslog-ng's tls() send it."""

    listen: HostPort = Field("127.0.0.1:6514", description="host:port of the TLS listener")
    cert_file: str = Field(description="PEM certificate (chain) the listener serves")
    key_file: str = Field(description="PEM private key of the certificate")
    client_ca_file: str | None = Field(
        None, description="Require client certificates signed by this CA (rsyslog's x509/certvalid mode)")


class SyslogSource(Section):
    """Syslog over UDP and TCP, as rsyslog and syslog-ng forward it."""

    enabled: bool = Field(True, description="Accept syslog from rsyslog or syslog-ng (off when the section is not written)")
    listen: HostPort = Field("127.0.0.1:5140", description="host:port for RFC 3164/5424 over UDP and TCP")
    udp: bool = Field(True, description="Listen on UDP")
    tcp: bool = Field(True, description="Listen on TCP (octet-counted and newline-framed)")
    max_message_bytes: int = Field(65536, ge=512, description="Longer messages are truncated and tagged")
    max_connections: int = Field(
        256, ge=1, description="TCP connections open at once; more are closed at once and counted (each holds a "
        "file descriptor: keep it well under LimitNOFILE)"
    )
    idle_timeout: Duration = Field(
        as_written("5m"), gt=0, description="A TCP connection that sends no complete message for this long is "
        "closed (rsyslog and syslog-ng reconnect when they have something to send)"
    )
    tls: SyslogTLS | None = Field(None, description="Also listen for syslog over TLS (RFC 5425)")
    rate_per_peer: float | None = Field(
        None, gt=0, description="Messages a second accepted from one sending address (bursts of ten times as many); "
        "the excess is dropped and counted (reason rate_limited). Unset: no limit"
    )
    fields: dict[str, str] = Field(
        default_factory=lambda: {"type": "syslog"}, description="Added to each record: type, component, ..."
    )


class JournaldSource(Section):
    """The systemd journal, followed with journalctl; a section written is enabled."""

    enabled: bool = Field(True, description="Read the journal (written sections are enabled unless false)")
    directory: str | None = Field(
        None, description="Journal folder to read (journalctl --directory), e.g. one systemd-journal-remote "
        "writes; default: this host's system journal",
    )
    files: list[str] = Field(
        default_factory=list, description="Journal files or globs to read (journalctl --file), instead of a folder"
    )
    matches: list[str] = Field(
        default_factory=list, description="journalctl matches, FIELD=value (e.g. _SYSTEMD_UNIT=nova-compute.service); "
        "entries matching any of them; '+' between groups as in journalctl",
    )
    since: Literal["head", "now"] = Field(
        "head", description="With no cursor saved yet: read the journal from its start, or only new entries"
    )
    fields: dict[str, str] = Field(
        default_factory=lambda: {"type": "journald"},
        description="Added to each record: type, component (default: from the unit or SYSLOG_IDENTIFIER), ...",
    )
    tags: list[str] = Field(default_factory=list, description="Free tags added to each record")
    journalctl: str = Field("journalctl", description="The journalctl program (Debian's systemd package)")

    @model_validator(mode="after")
    def _one_place(self) -> JournaldSource:
        if self.directory and self.files:
            raise ValueError("give directory or files, not both")
        for match in self.matches:
            if match != "+" and not _JOURNAL_MATCH.match(match):
                raise ValueError(f"journal match {match!r} must be FIELD=value (FIELD in capitals) or '+'")
        return self


#: A journalctl match: a field name (capitals, digits, underscores) and a value.
_JOURNAL_MATCH = re.compile(r"^[A-Z0-9_]+=.*$", re.S)


class AgentSpool(Section):
    """The on-disk buffer used while the bus is unreachable (``<data_dir>/spool``)."""

    max_bytes: int = Field(256 << 20, ge=1 << 16, description="When the spool holds this much, reading pauses")
    compression: Literal["none", "gzip"] = Field("none", description="Compress spooled batches")


class AgentConfig(Section):
    """Limits, batching and spooling of the node agent's log shipping."""

    max_line_bytes: int = Field(
        1 << 20, ge=64, description="Longer lines are cut here and tagged 'truncated'; the rest is skipped unread"
    )
    max_event_bytes: int = Field(4 << 20, ge=64, description="A multi-line event stops growing at this size")
    max_event_lines: int = Field(1000, ge=1, description="A multi-line event stops growing at this many lines")
    multiline_flush: Duration = Field(
        2.0, gt=0, description="A traceback still open at the end of a file ships after this long without a new "
        "line (complete entries ship at once)"
    )
    batch_records: int = Field(500, ge=1, description="Records per batch")
    batch_bytes: int = Field(1 << 20, ge=1024, description="Bytes per batch (sum of line lengths)")
    batch_wait: Duration = Field(0.5, gt=0, description="Ship a partial batch after this long")
    publish_timeout: Duration = Field(10.0, gt=0, description="A publish taking longer counts as the bus being down")
    scan_interval: Duration = Field(1.0, gt=0, description="How often globs are re-expanded for new files")
    poll_interval: Duration = Field(0.25, gt=0, description="How often open files are checked for new data")
    read_bytes: int = Field(256 << 10, ge=4096, description="Bytes read from a file per turn")
    release_after: Duration = Field(
        2.0, ge=0, description="A deleted or rotated-away file is closed this long after its last line was read"
    )
    checkpoint_ttl: Duration = Field(7 * 86400.0, gt=0, description="Forget checkpoints of files unseen this long")
    output_file: str | None = Field(
        None, description="Ship JSON lines to this file (fsynced) instead of the bus, like Filebeat's output.file"
    )
    spool: AgentSpool = Field(default_factory=AgentSpool)


class CeilometerSource(Section):
    enabled: bool = Field(True, description="Accept Ceilometer's udp:// publisher")
    udp: HostPort = Field("127.0.0.1:4952", description="host:port for msgpack datagrams")
    http: bool = Field(True, description="Accept Ceilometer's http:// publisher at POST /v1/ceilometer/samples on the API")
    telemetry_secret: SecretStr | None = Field(None, description="Verify message_signature with this secret")
    rate_per_peer: float | None = Field(
        None, gt=0, description="UDP datagrams a second accepted from one sending address (bursts of ten times as "
        "many); the excess is refused and counted (reason rate_limited). Unset: no limit"
    )


class HostMetrics(Section):
    """This host's CPU, memory, load, disk and network as samples."""

    enabled: bool = Field(True, description="Collect this host's figures")
    interval: Duration = Field(10.0, gt=0, description="Seconds between collections")


class ChecksConfig(Section):
    """Host and cloud checks of this node's role templates (rules/templates), run by the agent."""

    enabled: bool = Field(False, description="Run the templates' checks (on when this section is written)")
    templates: list[str] = Field(
        default_factory=list, description="Role templates (rules/templates) for this node; stamped as its role"
    )
    interval: Duration = Field(60.0, gt=0, description="Default seconds between checks")
    timeout: Duration = Field(10.0, gt=0, description="Seconds one check may take before it counts as failed")
    template_paths: list[str] = Field(
        default_factory=list, description="Folders searched for <template>.yaml before the shipped rules/templates"
    )
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-check settings over the template's (credentials, URLs), by check name"
    )

    _written = model_validator(mode="before")(written_is_enabled)


class SourcesConfig(Section):
    """What the node agent reads and listens to."""

    files: list[FileSource] = Field(default_factory=default_file_sources, description="Log files to tail")
    # A section written in the file is on unless it says ``enabled: false``; these two listen on
    # the network (a broker, a port), so the all-in-one leaves them off when they are not written;
    # the journal too (a host's whole journal is not what an all-in-one should ship unasked).
    notifications: NotificationsSource = Field(default_factory=lambda: NotificationsSource(enabled=False))
    syslog: SyslogSource = Field(default_factory=lambda: SyslogSource(enabled=False))
    journald: JournaldSource = Field(default_factory=lambda: JournaldSource(enabled=False))
    ceilometer: CeilometerSource = Field(default_factory=CeilometerSource)
    zabbix: ZabbixSource = Field(default_factory=ZabbixSource)
    zabbix_poller: ZabbixPoller = Field(default_factory=lambda: ZabbixPoller(enabled=False))
    host_metrics: HostMetrics = Field(default_factory=HostMetrics)
    checks: ChecksConfig = Field(default_factory=lambda: ChecksConfig(enabled=False))
    agent: AgentConfig = Field(default_factory=AgentConfig)
