"""Agent sources: files, notifications, syslog, Ceilometer publishers, Zabbix, checks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from telemetry.config.base import Duration, HostPort, Section

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


class NotificationsSource(Section):
    """OpenStack notifications read from the cloud's RabbitMQ with a queue of our own."""

    enabled: bool = Field(False, description="Listen for oslo.messaging notifications")
    url: str = Field("amqp://guest:guest@127.0.0.1:5672/", description="The cloud's transport URL")
    exchanges: list[str] = Field(
        default_factory=lambda: ["nova", "cinder", "neutron", "glance", "heat", "openstack"],
        description="Exchanges OpenStack services publish notifications on",
    )
    topics: list[str] = Field(default_factory=lambda: ["notifications"], description="Notification topics")


class SyslogSource(Section):
    enabled: bool = Field(False, description="Accept syslog from rsyslog or syslog-ng")
    listen: HostPort = Field("127.0.0.1:5140", description="host:port for RFC 3164/5424 over UDP and TCP")


class CeilometerSource(Section):
    enabled: bool = Field(True, description="Accept Ceilometer's udp:// publisher")
    udp: HostPort = Field("127.0.0.1:4952", description="host:port for msgpack datagrams")
    http: bool = Field(True, description="Accept Ceilometer's http:// publisher at POST /v1/ceilometer/samples on the API")
    telemetry_secret: SecretStr | None = Field(None, description="Verify message_signature with this secret")


class ZabbixSource(Section):
    enabled: bool = Field(False, description="Accept zabbix_sender data and answer passive checks")
    trapper: HostPort = Field("127.0.0.1:10051", description="host:port of the trapper (zabbix_sender protocol)")
    passive: HostPort = Field("127.0.0.1:10050", description="host:port of the agent's passive-check listener")


class HostMetrics(Section):
    """This host's CPU, memory, load, disk and network as samples."""

    enabled: bool = Field(True, description="Collect this host's figures")
    interval: Duration = Field(10.0, gt=0, description="Seconds between collections")


class ChecksConfig(Section):
    templates: list[str] = Field(default_factory=list, description="Check templates (rules/templates) for this node's role")
    interval: Duration = Field(60.0, gt=0, description="Default seconds between checks")


class SourcesConfig(Section):
    files: list[FileSource] = Field(default_factory=default_file_sources, description="Log files to tail")
    notifications: NotificationsSource = Field(default_factory=NotificationsSource)
    syslog: SyslogSource = Field(default_factory=SyslogSource)
    ceilometer: CeilometerSource = Field(default_factory=CeilometerSource)
    zabbix: ZabbixSource = Field(default_factory=ZabbixSource)
    host_metrics: HostMetrics = Field(default_factory=HostMetrics)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
