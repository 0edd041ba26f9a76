"""Every sample log, shipped and new, parses with no failure tag; the new sources give their fields."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from telemetry.parse import Parser

NOW = datetime(2026, 3, 10, tzinfo=timezone.utc)
SHARED = Path("/work/shared/samples/logs")
#: The samples this repository adds for sources the shared folder does not have.
OURS = Path(__file__).resolve().parent / "samples" / "logs"
#: Sample file -> the type an operator gives its source.
TYPES = {
    "ceilometer-api.log": "openstack", "cinder-volume.log": "openstack", "glance-api.log": "openstack",
    "heat-engine.log": "openstack", "keystone.log": "openstack", "neutron-server.log": "openstack",
    "nova-compute.log": "openstack", "nova-conductor-kilo.log": "openstack", "haproxy.log": "haproxy",
    "swift-proxy.log": "syslog", "syslog": "syslog", "horizon-access.log": "apache", "rabbitmq.log": "rabbitmq",
    "mariadb.log": "mariadb", "libvirtd.log": "libvirt", "ovs-vswitchd.log": "ovs",
    "nginx-access.log": "nginx", "nginx-error.log": "nginx", "keystone-error.log": "apache-error",
    "keystone-access.log": "keystone-access", "ceph-osd.log": "ceph", "ceph-mon.log": "ceph", "ceph.log": "ceph",
    "memcached.log": "memcached", "keepalived.log": "keepalived", "pacemaker.log": "pacemaker",
    "corosync.log": "corosync", "syslog-rfc3339": "rsyslog", "nova-api-json.log": "oslo-json",
}


@pytest.fixture(scope="module")
def parser() -> Parser:
    return Parser()


def events(parser: Parser, path: Path) -> list[dict]:
    from telemetry.collect.multiline import make_joiner

    joiner = make_joiner("python" if TYPES[path.name] in ("openstack", "rabbitmq") else "none")
    entries = []
    for line in path.read_text().splitlines():
        entries += joiner.feed(line, 0, 0)
    entries += joiner.flush()
    out = []
    for e in entries:
        d = parser.parse_dict(e.lines, TYPES[path.name], now=NOW)
        assert d is not None
        assert not [t for t in d["tags"] if t.startswith("_")], (path.name, d)
        out.append(d)
    return out


def test_every_sample_has_a_type(samples_dir: Path) -> None:
    names = {p.name for p in (samples_dir / "logs").iterdir()} | {p.name for p in OURS.iterdir()}
    if SHARED.is_dir():
        names |= {p.name for p in SHARED.iterdir()}
    assert names <= set(TYPES), names - set(TYPES)


@pytest.mark.parametrize("name", sorted(TYPES))
def test_sample_parses_without_failure(parser: Parser, samples_dir: Path, name: str) -> None:
    assert events(parser, sample(samples_dir, name))


def sample(samples_dir: Path, name: str) -> Path:
    """The shared samples first (the seeds' real-format files), then the ones this repository adds."""
    path = samples_dir / "logs" / name
    return path if path.exists() else OURS / name


def one(parser: Parser, samples_dir: Path, name: str) -> list[dict]:
    return events(parser, sample(samples_dir, name))


def test_api_access_lines_split(parser: Parser, samples_dir: Path) -> None:
    neutron = one(parser, samples_dir, "neutron-server.log")[0]
    assert (neutron["method"], neutron["path"], neutron["status"], neutron["bytes"], neutron["duration"]) == \
        ("GET", "/v2.0/ports?device_id=3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21", 200, 1093, 0.085124)
    assert neutron["message"].startswith('10.0.0.11 "GET')  # the message keeps the whole text
    glance = one(parser, samples_dir, "glance-api.log")[0]
    assert (glance["method"], glance["status"], glance["bytes"], glance["duration"], glance["client_ip"]) == \
        ("GET", 200, 13267968, 2.104411, "10.0.0.11,10.0.0.5")
    keystone = one(parser, samples_dir, "keystone.log")[0]
    assert (keystone["method"], keystone["path"]) == ("POST", "/v3/auth/tokens")
    nova = parser.parse_dict('2026-03-02 09:14:05.631 2210 INFO nova.osapi_compute.wsgi.server [req-5e4d3c2b-'
                             '1a09-4f8e-b7d6-c5b4a3928170 - - - - -] 10.0.0.11 "GET /v2/9a8b/servers/detail '
                             'HTTP/1.1" status: 200 len: 1893 time: 0.2477829', "nova", now=NOW)
    assert nova is not None and (nova["method"], nova["path"], nova["status"], nova["bytes"], nova["duration"]) == \
        ("GET", "/v2/9a8b/servers/detail", 200, 1893, 0.2477829)
    wsgi = one(parser, samples_dir, "keystone-access.log")
    assert (wsgi[0]["method"], wsgi[0]["status"], wsgi[0]["bytes"], wsgi[0]["duration"]) == ("POST", 201, 7821, 0.084512)
    assert wsgi[1]["duration"] == 0.001204
    nginx = one(parser, samples_dir, "nginx-access.log")
    assert (nginx[0]["status"], nginx[0]["duration"], nginx[0]["forwarded_for"], nginx[1]["remote_user"]) == \
        (200, 0.248, "10.1.2.3", "admin")
    # the JSON formatter's access line is split the same way
    assert one(parser, samples_dir, "nova-api-json.log")[0]["status"] == 200


def test_oslo_json_maps_onto_the_event_contract(parser: Parser, samples_dir: Path) -> None:
    access, error = one(parser, samples_dir, "nova-api-json.log")
    assert (access["level"], access["loglevel"], access["logger"], access["pid"], access["host"]) == \
        ("INFO", "INFO", "nova.osapi_compute.wsgi.server", 2210, "ctl01")
    assert access["request_id"] == "req-5e4d3c2b-1a09-4f8e-b7d6-c5b4a3928170"
    assert access["global_request_id"] == "req-00000000-1111-4222-8333-444455556666"
    assert access["user_id"] == "6f1c0a3b2e8d4d7c9b1a2f3e4d5c6b7a" and access["component"] == "nova"
    assert access["@timestamp"] == "2026-03-02T09:14:05.631000Z" and "msg" not in access
    assert (error["level"], error["instance_id"]) == ("ERROR", "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d")
    assert error["message"].startswith("Instance failed to spawn\nTraceback")
    bad = parser.parse_dict('{"not": "closed"', "json", now=NOW)
    assert bad is not None and bad["tags"] == ["_jsonparsefailure"] and bad["message"] == '{"not": "closed"'
    odd = parser.parse_dict('{"id": 5, "tags": "x", "@timestamp": "never", "n": 123456789012345678901234567890}',
                            "json", now=NOW)
    assert odd is not None and odd["id_raw"] == 5 and odd["tags_raw"] == "x" and odd["timestamp"] == "never"
    assert odd["tags"] == ["_dateparsefailure"] and odd["n"] == 1.2345678901234568e29  # orjson reads a huge integer as a float


def test_error_logs_ceph_and_ha_stack(parser: Parser, samples_dir: Path) -> None:
    kerr = one(parser, samples_dir, "keystone-error.log")
    assert (kerr[0]["level"], kerr[0]["logger"], kerr[0]["request_id"], kerr[0]["client_ip"]) == \
        ("WARNING", "keystone.server.flask.application", "req-1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e", "10.0.0.57")
    assert kerr[0]["message"].startswith("Authorization failed.") and kerr[0]["module"] == "wsgi"
    assert (kerr[1]["level"], kerr[1]["pid"], kerr[2]["level"], kerr[2]["@timestamp"]) == \
        ("INFO", 2201, "ERROR", "2026-03-02T09:15:10Z")
    nerr = one(parser, samples_dir, "nginx-error.log")
    assert (nerr[0]["level"], nerr[0]["connection_id"], nerr[1]["level"]) == ("ERROR", 5, "WARNING")
    osd = one(parser, samples_dir, "ceph-osd.log")
    assert [e["level"] for e in osd] == ["WARNING", "ERROR", "DEBUG"] and osd[0]["channel"] == "cluster"
    cluster = one(parser, samples_dir, "ceph.log")
    assert (cluster[0]["level"], cluster[0]["entity"], cluster[0]["sequence"]) == ("WARNING", "mon.a", 1234)
    pcmk = one(parser, samples_dir, "pacemaker.log")
    assert [(e["component"], e["level"]) for e in pcmk] == \
        [("pacemaker-controld", "INFO"), ("pacemaker-schedulerd", "WARNING"), ("crmd", "INFO")]
    assert pcmk[0]["function"] == "do_state_transition" and pcmk[0]["message"].startswith("State transition")
    coro = one(parser, samples_dir, "corosync.log")
    assert (coro[0]["subsystem"], coro[0]["component"], coro[1]["subsystem"]) == ("TOTEM", "corosync", "KNET")
    ka = one(parser, samples_dir, "keepalived.log")
    assert (ka[0]["vrrp_instance"], ka[0]["vrrp_state"], ka[1]["script_state"], ka[2]["real_port"]) == \
        ("VI_1", "MASTER", "succeeded", 3306)
    mc = one(parser, samples_dir, "memcached.log")
    assert (mc[0]["direction"], mc[0]["fd"], mc[3]["message"]) == \
        ("<", 28, "failed to listen on TCP port 11211: Address already in use")


def test_rsyslog_rfc3339_files_dispatch_on_the_app_name(parser: Parser, samples_dir: Path) -> None:
    nova, haproxy, systemd = one(parser, samples_dir, "syslog-rfc3339")
    assert (nova["component"], nova["level"], nova["request_id"], nova["logsource"]) == \
        ("nova", "INFO", "req-7d1e2a40-5b3c-4f0e-9a55-0c2d6b3e8f11", "cn01")
    assert nova["@timestamp"] == "2026-03-02T09:14:00.120000Z"  # the application's own time
    assert nova["message"] == "Took 14.21 seconds to build instance."
    assert (haproxy["http_status_code"], haproxy["host"]) == (503, "lb01")
    assert haproxy["@timestamp"] == "2026-03-02T09:14:01.000001Z"
    assert (systemd["program"], systemd["message"]) == ("systemd", "Started OpenStack Compute.")
    custom = Parser(programs={"myapp": "nginx"})
    ev = custom.parse_dict('2026-03-02T09:14:00+00:00 web1 myapp: 2026/03/02 09:14:05 [error] 1#1: boom', "syslog",
                           now=NOW)
    assert ev is not None and ev["level"] == "ERROR" and ev["thread_id"] == 1
