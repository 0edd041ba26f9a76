"""Every line of every sample log parses into the right fields (one test per file)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from telemetry.collect.multiline import make_joiner
from telemetry.models import Event
from telemetry.parse import FAILURE_TAG, Parser

NOW = datetime(2026, 3, 10, tzinfo=timezone.utc)  # syslog lines carry no year
USER = "6f1c0a3b2e8d4d7c9b1a2f3e4d5c6b7a"
PROJECT = "9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d"


@pytest.fixture(scope="module")
def parser() -> Parser:
    return Parser()


def parse_file(parser: Parser, path: Path, type_: str) -> list[Event]:
    """As the agent ships it (python multiline joiner) and the stage parses it."""
    joiner = make_joiner("python")
    entries = []
    for line in path.read_text().splitlines():
        entries += joiner.feed(line, 0, 0)
    entries += joiner.flush()
    events = [parser.parse(e.lines, type_, now=NOW) for e in entries]
    for e, ev in zip(entries, events):
        assert not [t for t in ev.tags if t.startswith("_")], (ev.tags, ev.message)
        # The model-free path (telemetry parse, the stage) gives exactly the validated Event.
        got, want = parser.parse_dict(e.lines, type_, now=NOW), ev.to_dict()
        assert got == want and list(got) == list(want)
    return events


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def extra(ev: Event) -> dict:
    return ev.model_extra or {}


def check(ev: Event, **want: object) -> None:
    got = ev.to_dict()
    for k, v in want.items():
        assert got.get(k) == v, f"{k}: {got.get(k)!r} != {v!r} in {got}"


def test_nova_compute(parser: Parser, samples_dir: Path) -> None:
    evs = parse_file(parser, samples_dir / "logs" / "nova-compute.log", "openstack")
    assert len(evs) == 8
    check(evs[0], level="INFO", logger="nova.compute.claims", pid=31842, component="nova",
          request_id="req-7d1e2a40-5b3c-4f0e-9a55-0c2d6b3e8f11", user_id=USER, project_id=PROJECT,
          instance_id="3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21", message="Claim successful on node cn01.example.org",
          user_domain_id="default", project_domain_id="default", loglevel="INFO")
    assert evs[0].timestamp == ts("2026-03-02 09:14:07.112")
    check(evs[2], request_id=None, instance_id="3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21",
          message="VM Started (Lifecycle Event)")
    check(evs[4], level="WARNING", request_id="req-2b9e0c11-4a7d-4e3f-8b6a-5c4d3e2f1a09", user_id=None,
          project_id=None, instance_id=None)
    tb = evs[5]  # the traceback logged line by line at ERROR: one event
    check(tb, level="ERROR", request_id="req-c0ffee00-1111-4222-8333-944455556666",
          instance_id="0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d")
    assert tb.message.startswith("Instance failed to spawn: libvirt.libvirtError")
    for part in ("Traceback (most recent call last):", "line 2743, in _build_resources", "yield resources",
                 "return self._domain.createWithFlags(flags)"):
        assert part in tb.message
    assert tb.message.count("\n") == 7
    check(evs[6], level="DEBUG", logger="oslo_concurrency.lockutils")
    assert evs[6].message.startswith('Lock "compute_resources" acquired')
    check(evs[7], logger="nova.compute.resource_tracker")
    assert evs[7].message.endswith("pci_stats=[]")


def test_ceilometer_api_traceback(parser: Parser, samples_dir: Path) -> None:
    evs = parse_file(parser, samples_dir / "logs" / "ceilometer-api.log", "openstack")
    assert len(evs) == 2
    crit = evs[0]
    check(crit, level="CRITICAL", logger="ceilometer", pid=2691, request_id=None, component="ceilometer")
    assert crit.timestamp == ts("2015-04-07 20:51:42.833")
    assert crit.message.startswith("ConnectionFailure: could not connect to 47.147.50.1:27017")
    assert crit.message.count("\n") == 9  # all nine TRACE lines
    assert "root = VersionSelectorApplication()" in crit.message
    check(evs[1], level="INFO", logger="ceilometer.api.app", pid=2702, message="Starting server in PID 2702")


def test_nova_conductor_kilo(parser: Parser, samples_dir: Path) -> None:
    evs = parse_file(parser, samples_dir / "logs" / "nova-conductor-kilo.log", "openstack")
    assert [e.level for e in evs] == ["INFO", "INFO", "ERROR", "WARNING", "ERROR", "INFO"]
    check(evs[0], loglevel="AUDIT", logger="nova.compute.resource_tracker", request_id=None,
          message="Total physical ram (MB): 64401, total allocated virtual ram (MB): 4608")
    check(evs[1], request_id="req-8a2f3c44-19b0-4e2d-a1f3-5d6e7f8a9b0c", user_id="admin", project_id="demo",
          instance_id=None)
    check(evs[2], instance_id="9b3c1d2e-3f4a-4b5c-8d6e-7f8091a2b3c4", user_id="admin")
    assert evs[2].message.startswith("Error from last host: cn02")
    check(evs[5], logger="oslo.messaging._drivers.impl_rabbit",
          message="Reconnected to AMQP server on 172.16.50.1:5672")


@pytest.mark.parametrize("name,component,levels", [
    ("cinder-volume.log", "cinder", ["INFO", "ERROR", "ERROR"]),
    ("glance-api.log", "glance", ["INFO", "WARNING"]),
    ("heat-engine.log", "heat", ["INFO", "INFO", "INFO"]),
    ("keystone.log", "keystone", ["INFO", "WARNING", "ERROR"]),
    ("neutron-server.log", "neutron", ["INFO", "INFO", "ERROR"]),
])
def test_oslo_services(parser: Parser, samples_dir: Path, name: str, component: str, levels: list[str]) -> None:
    path = samples_dir / "logs" / name
    evs = parse_file(parser, path, "openstack")
    lines = path.read_text().splitlines()
    assert [e.level for e in evs] == levels
    for ev, line in zip(evs, lines, strict=True):
        assert line.endswith(ev.message) and ev.message
        assert line.startswith(extra(ev)["timestamp"])
        assert str(ev.pid) in line and ev.logger in line
        if ev.request_id:
            assert f"[{ev.request_id} " in line
        if "[-]" in line:
            assert ev.request_id is None
    # a request traced across services: ids from the modern context
    first = evs[0]
    if name in ("cinder-volume.log", "glance-api.log", "neutron-server.log"):
        check(first, user_id=USER, project_id=PROJECT, user_domain_id="default")
    if name == "cinder-volume.log":
        check(evs[1], request_id="req-6a7b8c9d-0e1f-4a2b-83c4-5d6e7f8a9b0c", user_id=None,
              message='Volume group "cinder-volumes" not found', component="cinder")
    if name == "glance-api.log":
        assert first.message.startswith("10.0.0.11,10.0.0.5 - - [02/Mar/2026 09:14:08]")
    if name == "heat-engine.log":
        check(first, logger="heat.engine.resources.openstack.heat.scaling_policy",
              message="Alarm web_server_scaleup_policy, new state alarm")
    if name == "neutron-server.log":
        assert evs[1].request_id is None and evs[1].message.startswith("Nova event response:")


def test_swift(parser: Parser, samples_dir: Path) -> None:
    evs = parse_file(parser, samples_dir / "logs" / "swift-proxy.log", "syslog")
    proxy, obj, repl = evs
    check(proxy, host="st01", component="proxy-server", program="proxy-server", client_ip="10.0.0.11",
          remote_addr="10.0.0.11", request_date="02/Mar/2026/09/50/11", verb="GET",
          request="/v1/AUTH_9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d/backups/db.tar.gz", protocol="HTTP/1.0", status=200,
          user_agent="python-swiftclient-3.13.1", auth_token="gAAAAABf3...", bytes_sent=10485760,
          transaction_id="tx7f3e2d1c0b9a48a8b6c5d-0063f1a2b3", request_time=0.2181,
          request_start_time=1677750611.312845964, request_end_time=1677750611.531004906, policy_index=0)
    assert "referer" not in extra(proxy) and "bytes_recvd" not in extra(proxy)
    assert proxy.timestamp == ts("2026-03-02 09:50:11")
    check(obj, program="object-server", client_ip="10.0.0.21", verb="PUT", status=201,
          request="/sdb1/1234/AUTH_9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d/backups/db.tar.gz",
          referer="PUT http://st01:8080/v1/AUTH_9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d/backups/db.tar.gz",
          transaction_id="tx7f3e2d1c0b9a48a8b6c5d-0063f1a2b3", user_agent="proxy-server 2301",
          request_time=0.0412, server_pid=3011, policy_index=0)
    check(repl, program="account-replicator", message="Replication run OVER", host="st01")
    # the swift type reads the same lines
    assert parser.parse("Mar  2 09:50:20 st01 account-replicator: Replication run OVER", "swift").tags == []


def test_haproxy(parser: Parser, samples_dir: Path) -> None:
    http, down = parse_file(parser, samples_dir / "logs" / "haproxy.log", "haproxy")
    check(http, host="lb01", program="haproxy", pid=1402, client_ip="10.0.0.57", client_port=51234,
          accept_date="02/Mar/2026:09:14:00.104", frontend_name="nova_api_cluster",
          backend_name="nova_api_cluster", server_name="cc01", time_request=0, time_queue=0,
          time_backend_connect=1, time_backend_response=85, time_duration="86", http_status_code=200,
          bytes_read=1893, termination_state="----", actconn=12, feconn=12, beconn=3, srvconn=1, retries="0",
          srv_queue=0, backend_queue=0, http_verb="GET", http_request="/v2.1/servers/detail", http_version="1.1")
    check(down, program="haproxy", pid=1402, component="haproxy")
    assert down.message.startswith("Server keystone_cluster/cc02 is DOWN")
    assert down.timestamp == ts("2026-03-02 09:14:31")
    assert http.message.startswith("10.0.0.57:51234 [02/Mar/2026:09:14:00.104]")  # the message behind the header
    line = (samples_dir / "logs" / "haproxy.log").read_text().splitlines()[0]
    assert parser.parse(line, "syslog").to_dict()["http_status_code"] == 200  # the app name picks haproxy


def test_horizon_access(parser: Parser, samples_dir: Path) -> None:
    evs = parse_file(parser, samples_dir / "logs" / "horizon-access.log", "apache")
    check(evs[0], clientip="10.0.0.57", ident="-", auth="-", timestamp="02/Mar/2026:09:14:02 +0000", verb="GET",
          request="/dashboard/project/instances/", httpversion="1.1", response=200, bytes=11872,
          referrer='"https://cloud.example.org/dashboard/project/"',
          agent='"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"')
    assert evs[0].timestamp == ts("2026-03-02 09:14:02")
    assert extra(evs[1])["request"].endswith("obj_id=3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21")
    check(evs[2], clientip="10.0.0.58", verb="POST", response=500, bytes=231, referrer='"-"', agent='"curl/8.5.0"')
    assert parser.parse(evs[2].message, "horizon").tags == []


def test_rabbitmq(parser: Parser, samples_dir: Path) -> None:
    evs = parse_file(parser, samples_dir / "logs" / "rabbitmq.log", "rabbitmq")
    assert [e.level for e in evs] == ["INFO", "INFO", "WARNING", "WARNING", "ERROR", "INFO"]
    check(evs[0], loglevel="info", erlang_pid="<0.812.0>", component="rabbitmq",
          message="accepting AMQP connection <0.812.0> (10.0.0.21:53422 -> 10.0.0.5:5672)")
    assert evs[0].timestamp == datetime(2026, 3, 2, 9, 0, 1, 118342, tzinfo=timezone.utc)
    check(evs[3], message="client unexpectedly closed TCP connection", erlang_pid="<0.915.0>")
    old = evs[5]  # the =INFO REPORT==== form, two lines joined
    check(old, loglevel="INFO", timestamp="7-Apr-2015::20:51:42",
          message="accepting AMQP connection <0.20733.3> (172.16.50.11:45131 -> 172.16.50.1:5672)")
    assert old.timestamp == ts("2015-04-07 20:51:42")


def test_mariadb(parser: Parser, samples_dir: Path) -> None:
    evs = parse_file(parser, samples_dir / "logs" / "mariadb.log", "mariadb")
    assert [e.level for e in evs] == ["INFO", "INFO", "WARNING", "ERROR"]
    check(evs[0], loglevel="Note", thread_id=0, subsystem="WSREP", message="Member 2.0 (db02) synced with group.")
    assert evs[0].timestamp == ts("2026-03-02 09:00:00")
    check(evs[2], thread_id=31, loglevel="Warning")
    assert "subsystem" not in extra(evs[2])
    assert evs[2].message.startswith("Aborted connection 31 to db: 'nova'")
    check(evs[3], subsystem="WSREP", message="failed to open gcomm backend connection: 110: failed to reach "
          "primary view: 110 (Connection timed out)")
    old = parser.parse("160302  9:00:00 [Note] WSREP: Member synced", "mysql")
    check(old, level="INFO", subsystem="WSREP")
    assert old.timestamp == ts("2016-03-02 09:00:00")


def test_libvirtd(parser: Parser, samples_dir: Path) -> None:
    a, b = parse_file(parser, samples_dir / "logs" / "libvirtd.log", "libvirt")
    check(a, level="ERROR", thread_id=2044, loglevel="error", function="qemuMonitorIO", source_line=730,
          message="internal error: End of file from qemu monitor", component="libvirt")
    assert a.timestamp == datetime(2026, 3, 2, 9, 16, 39, 998000, tzinfo=timezone.utc)
    check(b, function="qemuProcessReportLogError", source_line=2050)


def test_ovs_vswitchd(parser: Parser, samples_dir: Path) -> None:
    a, b = parse_file(parser, samples_dir / "logs" / "ovs-vswitchd.log", "ovs")
    check(a, level="INFO", sequence=412, module="bridge", message="bridge br-int: added interface tap1c2d3e4f-5a on port 17")
    assert a.timestamp == datetime(2026, 3, 2, 9, 14, 6, 101000, tzinfo=timezone.utc)
    check(b, level="WARNING", loglevel="WARN", sequence=413, module="connmgr",
          message="br-int<->tcp:127.0.0.1:6633: connection failed (Connection refused)")


def test_syslog(parser: Parser, samples_dir: Path) -> None:
    evs = parse_file(parser, samples_dir / "logs" / "syslog", "syslog")
    assert len(evs) == 4
    check(evs[0], host="cn01", program="systemd", pid=1, message="Started OpenStack Compute.")
    assert evs[0].timestamp == ts("2026-03-02 09:00:05")
    check(evs[1], program="dnsmasq-dhcp", pid=3301,
          message="DHCPACK(tap1c2d3e4f-5a) 192.168.0.14 fa:16:3e:11:22:33 host-192-168-0-14")
    check(evs[2], program="kernel", pid=None)
    assert evs[2].message.startswith("[123456.789012] EXT4-fs error (device sdb1)")
    rfc5424 = evs[3]
    check(rfc5424, priority="13", version="1", host="cn01", logsource="cn01", program="nova-compute", pid=31842,
          structured_data='[meta sequenceId="7"]', message="Compute node record updated", level="INFO")
    assert "msgid" not in extra(rfc5424)
    assert rfc5424.timestamp == datetime(2026, 3, 2, 9, 11, 0, 123456, tzinfo=timezone.utc)


def test_fields_carry_over_and_failure_keeps_message(parser: Parser) -> None:
    ev = parser.parse(["not a log line", "at all"], "openstack",
                      {"host": "cn01", "component": "nova", "path": "/var/log/nova/x.log", "tags": ["t1"]})
    assert ev.tags == ["t1", FAILURE_TAG]
    assert ev.message == "not a log line\nat all"
    check(ev, host="cn01", component="nova", path="/var/log/nova/x.log", type="openstack")
    assert parser.parse("anything", "no-such-type").tags == [FAILURE_TAG]
