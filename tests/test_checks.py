"""Item keys, role templates and the cloud health checks, against this machine's real services.

Peers: the local RabbitMQ (rabbitmqctl), PostgreSQL and MariaDB; Debian's
HAProxy (stats socket) and chrony (as an NTP server), started here.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kombu import Connection, Queue

from telemetry.bus.memory import MemoryBus
from telemetry.collect.checks.health.cluster import HaproxyCheck, KeepalivedCheck, parse_crm_mon, parse_haproxy_csv
from telemetry.collect.checks.health.files import LogGrowthCheck, NtpCheck
from telemetry.collect.checks.health.rabbitmq import RabbitmqCheck
from telemetry.collect.checks.health.services import EndpointsCheck, GaleraCheck, MysqlCheck, PostgresCheck
from telemetry.collect.checks.items import ItemCollector
from telemetry.collect.checks.keys import KeyError_, parse_key, quote_param
from telemetry.collect.checks.scheduler import CheckScheduler
from telemetry.collect.checks.templates import load_templates
from telemetry.config.loader import ConfigError, validate

from conftest import free_port
from zabbix_support import agent_port, drain_samples

RABBIT = "amqp://guest:guest@127.0.0.1:5672//"


# -- keys ----------------------------------------------------------------------------
def test_key_syntax() -> None:
    k = parse_key('proc.num[,root, "a, \\"quoted\\" one",[x,"y z"]]')
    assert k.name == "proc.num" and k.params == ("", "root", 'a, "quoted" one', ("x", "y z"))
    assert parse_key("agent.ping").params == ()
    assert parse_key("vfs.fs.size[/,pused]").param(1) == "pused"
    assert parse_key("system.cpu.util[,user]").param(0, "all") == "all"
    for bad, why in (("vfs.fs.size[/", "missing ']'"), ("a[b]c", "after the closing"), ("[x]", "must start"),
                     ('k["open', "unterminated"), ("k[[a,[b]]]", "nested"), ('k[a"b]', "quote inside")):
        with pytest.raises(KeyError_, match=why):
            parse_key(bad)
    for v in ("/", "a,b", "with ] bracket", ' lead', 'q"uote', ""):
        assert parse_key(f"k[{quote_param(v)}]").param(0) == v


def test_unsupported_keys_say_why() -> None:
    items = ItemCollector("h")
    for key, reason in (("nope", "Unsupported item key."), ("vfs.fs.size[", "Invalid item key format"),
                        ("system.cpu.load[all,avg2]", "Invalid second parameter."),
                        ("vfs.file.size[]", "Invalid first parameter: file name is required."),
                        ("system.cpu.util[,user]", "Collector has not gathered data yet.")):
        with pytest.raises(Exception, match=reason.replace("[", r"\[").replace(".", r"\.")) as e:
            items.get(key)
        assert type(e.value).__name__ == "NotSupported"


# -- config ---------------------------------------------------------------------------
def test_sections_written_are_enabled() -> None:
    s = validate({})
    assert s.sources.zabbix.enabled and s.sources.zabbix.trapper == "127.0.0.1:10051"
    assert s.sources.zabbix.passive == "127.0.0.1:10050"
    assert not s.sources.checks.enabled and not s.sources.zabbix_poller.enabled
    assert not s.sources.zabbix.active.enabled
    s = validate({"sources": {"checks": {"templates": ["controller"]}, "zabbix": {"active": {"server": "h:10051"}},
                              "zabbix_poller": {"targets": [{"host": "a", "keys": ["agent.ping"]}]}}})
    assert s.sources.checks.enabled and s.sources.zabbix.active.enabled and s.sources.zabbix_poller.enabled
    assert not validate({"sources": {"checks": {"enabled": False, "templates": ["x"]}}}).sources.checks.enabled
    with pytest.raises(ConfigError) as e:
        validate({"sources": {"zabbix": {"trapper": "nohost", "bogus": 1}}})
    assert {p.path for p in e.value.problems} == {"sources.zabbix.trapper", "sources.zabbix.bogus"}


def test_template_errors_name_the_entry(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        "template: mine\nchecks:\n"
        "  - {key: agent.ping}\n"
        "  - {key: 'vfs.fs.size[/'}\n"
        "  - {check: rabbitmq, colour: blue}\n"
        "  - {check: teleport}\n")
    [t], problems = load_templates(["mine", "absent"], [str(tmp_path)])
    assert [i.key for i in t.items] == ["agent.ping"]  # the good entry still runs
    text = "\n".join(problems)
    assert "checks[1]" in text and "missing ']'" in text
    assert "checks[2]" in text and "colour" in text
    assert "checks[3]" in text and "teleport" in text
    assert "no template 'absent'" in text


# -- the controller template on this machine ------------------------------------------------
async def test_controller_template_runs_here() -> None:
    [tpl], problems = load_templates(["controller"], overrides={
        "postgresql": {"url": "postgresql://postgres@127.0.0.1:5432/test"}})
    assert problems == []
    items = ItemCollector("ctl-test")
    items.cpu.sample()
    bus = MemoryBus()
    sched = CheckScheduler([tpl], items, bus, "ctl-test", interval=60, timeout=15)
    await asyncio.sleep(1.05)
    await sched.run_once()
    samples = await drain_samples(bus, "t", sched.published)
    assert len(samples) == sched.published > 0
    meters = {s.counter_name for s in samples}
    # every native item produced a sample (discovery prototypes: one per discovered fs / interface)
    for item in tpl.items:
        if item.discovery is None:
            assert item.key in meters, item.key
            assert sched.status[item.key] == "ok"
    assert any(m.startswith("vfs.fs.size[/,") for m in meters)
    assert any(m.startswith("net.if.in[") and m != "net.if.in[lo]" for m in meters)
    assert "net.if.in[lo]" not in meters  # the template's filter
    for s in samples:
        assert s.resource_id == "ctl-test" and s.resource_metadata["host"] == "ctl-test"
        assert s.resource_metadata["role"] == "controller"
    # the local services are checked for real
    assert sched.status["rabbitmq"] == "ok" and "rabbitmq.fd.used" in meters and "rabbitmq.partitions" in meters
    assert sched.status["mysql"] == "ok" and "mysql.ping" in meters
    assert sched.status["postgresql"] == "ok" and "pgsql.ping" in meters
    # absent services are skipped, plainly
    for name in ("galera", "pacemaker", "ceph", "endpoints", "processes", "keepalived"):
        assert sched.status[name].startswith("skipped: not present ("), (name, sched.status[name])
    assert "wsrep_on=OFF" in sched.status["galera"]
    status = {s.counter_name: s for s in samples if s.counter_name.startswith("check.status[")}
    assert status["check.status[galera]"].counter_volume == -1.0
    assert status["check.status[galera]"].resource_metadata["status"] == sched.status["galera"]
    assert status["check.status[rabbitmq]"].counter_volume == 1.0
    assert {h.label for h in tpl.health} == {k[len("check.status["):-1] for k in status}
    assert all(not v.startswith("failed: " + "Traceback") for v in sched.status.values())


async def test_check_crash_and_timeout_are_statuses_not_tracebacks() -> None:
    class Boom(EndpointsCheck):
        def run(self, timeout: float):  # type: ignore[no-untyped-def]
            raise RuntimeError("kaput")

    class Slow(EndpointsCheck):
        def run(self, timeout: float):  # type: ignore[no-untyped-def]
            time.sleep(3)

    ep = [{"name": "x", "url": "http://127.0.0.1:1/"}]
    from telemetry.collect.checks.templates import RoleTemplate
    tpl = RoleTemplate(name="t", source="-", items=[], health=[
        Boom(check="endpoints", name="boom", endpoints=ep), Slow(check="endpoints", name="slow", endpoints=ep)])
    sched = CheckScheduler([tpl], ItemCollector("h"), MemoryBus(), "h", interval=60, timeout=0.5)
    await sched.run_once()
    assert sched.status["boom"] == "failed: RuntimeError: kaput"
    assert sched.status["slow"] == "failed: no answer within 0.5s"


# -- services, for real ---------------------------------------------------------------------
def test_rabbitmq_queue_depth_and_consumers() -> None:
    name = f"telemetry-test-checks-{uuid.uuid4().hex[:8]}"
    with Connection(RABBIT) as conn:
        q = Queue(name, durable=False, auto_delete=False)
        q(conn.default_channel).declare()
        producer = conn.Producer()
        for i in range(3):
            producer.publish({"n": i}, routing_key=name)
        try:
            check = RabbitmqCheck(check="rabbitmq", management_url="http://127.0.0.1:1", queues=name)
            result = check.run(timeout=30)
            values = {k: (v, meta) for k, v, meta in result.values}
            assert result.status == "ok", result.status
            assert values[f"rabbitmq.queue.messages[{name}]"][0] == 3.0
            assert values[f"rabbitmq.queue.consumers[{name}]"][0] == 0.0
            assert values[f"rabbitmq.queue.messages[{name}]"][1]["via"] == "rabbitmqctl"
            assert values["rabbitmq.fd.limit"][0] > values["rabbitmq.fd.used"][0] > 0
            assert values["rabbitmq.sockets.limit"][0] > 0
            assert values["rabbitmq.partitions"][0] == 0.0 and values["rabbitmq.nodes.running"][0] >= 1
            assert values["rabbitmq.queues.without_consumers"][0] >= 1
            # only matching queues get per-queue values
            assert all(name in k for k in values if k.startswith("rabbitmq.queue."))
        finally:
            q(conn.default_channel).delete()
    missing = RabbitmqCheck(check="rabbitmq", management_url="http://127.0.0.1:1", rabbitmqctl="/nonexistent/ctl")
    # rabbitmq-server is installed here, so no way to ask it is a failure, not an absence
    assert missing.run(timeout=5).status.startswith("failed: management API: ")


def test_databases() -> None:
    assert PostgresCheck(check="postgresql", url="postgresql://postgres@127.0.0.1:5432/test").run(10).state == "ok"
    bad = PostgresCheck(check="postgresql", url="postgresql://nosuchuser@127.0.0.1:5432/test").run(10)
    assert bad.status.startswith("failed: ") and bad.values == [("pgsql.ping", 0.0, {})]
    r = MysqlCheck(check="mysql").run(10)
    assert r.state == "ok" and dict((k, v) for k, v, _ in r.values)["mysql.uptime"] > 0
    g = GaleraCheck(check="galera").run(10)
    assert g.status == "skipped: not present (Galera is not enabled (wsrep_on=OFF, wsrep_provider=none))"
    down = MysqlCheck(check="mysql", port=free_port()).run(5)
    assert down.status.startswith("failed: cannot connect")  # MariaDB is installed: a failure, not "absent"


def test_haproxy_stats_socket(tmp_path: Path) -> None:
    sock, up_port, front = tmp_path / "admin.sock", free_port(), free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""
global
    stats socket {sock} mode 600 level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s
listen api
    bind 127.0.0.1:{front}
    server good 127.0.0.1:{up_port} check inter 200ms fall 1 rise 1
    server bad 127.0.0.1:1 check inter 200ms fall 1 rise 1
""")
    import socket as s_

    listener = s_.socket()
    listener.bind(("127.0.0.1", up_port))
    listener.listen(16)
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        check = HaproxyCheck(check="haproxy", socket=str(sock))
        deadline = time.monotonic() + 10
        while True:
            r = check.run(5)
            values = {k: v for k, v, _ in r.values}
            if values.get("haproxy.server.up[api/bad]") == 0.0 and values.get("haproxy.server.up[api/good]") == 1.0:
                break
            assert time.monotonic() < deadline, (r, proc.poll())
            time.sleep(0.2)
        assert r.status.startswith("failed: api/bad is DOWN")
        assert values["haproxy.backend.up[api]"] == 1.0
    finally:
        proc.terminate()
        proc.wait(10)
        listener.close()
    assert HaproxyCheck(check="haproxy", socket=str(tmp_path / "none")).run(2).status.startswith("failed: no stats")


def test_haproxy_and_pacemaker_formats() -> None:
    csv = ("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n"
           "keystone,FRONTEND,,,0,0,,0,0,0,0,0,0,,,,,OPEN\n"
           "keystone,ctl1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP\n"
           "keystone,ctl2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN 1/2\n"
           "keystone,BACKEND,0,0,0,0,,0,0,0,0,0,,0,0,0,0,UP\n")
    values, problems = parse_haproxy_csv(csv)
    assert [(k, v) for k, v, _ in values] == [("haproxy.server.up[keystone/ctl1]", 1.0),
                                              ("haproxy.server.up[keystone/ctl2]", 0.0),
                                              ("haproxy.backend.up[keystone]", 1.0)]
    assert problems == ["keystone/ctl2 is DOWN 1/2"]
    with pytest.raises(ValueError, match="not HAProxy stats"):
        parse_haproxy_csv("<html>")
    xml = """<pacemaker-result api-version="2.2" request="crm_mon -1 --output-as=xml">
      <nodes>
        <node name="ctl1" id="1" online="true" standby="false" type="member"/>
        <node name="ctl2" id="2" online="false" standby="false" type="member"/>
      </nodes>
      <resources>
        <resource id="vip" resource_agent="ocf:heartbeat:IPaddr2" role="Started" active="true" failed="false"
                  nodes_running_on="1"><node name="ctl1" id="1" cached="true"/></resource>
        <clone id="haproxy-clone" multi_state="false" unique="false" failed="false">
          <resource id="haproxy" role="Stopped" active="false" failed="false" nodes_running_on="0"/>
        </clone>
      </resources>
    </pacemaker-result>"""
    values, problems = parse_crm_mon(xml)
    got = {k: (v, m) for k, v, m in values}
    assert got["pacemaker.nodes.online"][0] == 1.0 and got["pacemaker.nodes.total"][0] == 2.0
    assert got["pacemaker.resource.started[vip]"] == (1.0, {"resource": "vip", "started_on": "ctl1",
                                                            "role": "Started"})
    assert got["pacemaker.resource.started[haproxy]"][0] == 0.0
    assert problems == ["node ctl2 offline", "resource haproxy is Stopped"]


def test_ntp_offset_against_a_real_chronyd(tmp_path: Path) -> None:
    port = agent_port()
    conf = tmp_path / "chrony.conf"
    conf.write_text(f"port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\n"
                    f"pidfile {tmp_path}/chronyd.pid\n")
    proc = subprocess.Popen(["chronyd", "-d", "-x", "-u", "root", "-f", str(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        check = NtpCheck(check="ntp", servers=[f"127.0.0.1:{port}"])
        deadline = time.monotonic() + 10
        while (r := check.run(2)).state != "ok":
            assert time.monotonic() < deadline, (r, proc.poll())
            time.sleep(0.3)
        values = {k: v for k, v, _ in r.values}
        assert abs(values["ntp.offset"]) < 0.05  # the same clock
        assert values[f"ntp.offset[127.0.0.1:{port}]"] == values["ntp.offset"]
    finally:
        proc.terminate()
        proc.wait(10)
    gone = NtpCheck(check="ntp", servers=[f"127.0.0.1:{port}"]).run(1)
    assert gone.status.startswith("failed: 127.0.0.1:")


def test_log_growth_and_console_logs(tmp_path: Path) -> None:
    logs, inst = tmp_path / "nova", tmp_path / "instances"
    logs.mkdir()
    (logs / "nova-api.log").write_bytes(b"x" * 1000)
    for name, size in (("i-1", 10), ("i-2", 5000)):
        (inst / name).mkdir(parents=True)
        (inst / name / "console.log").write_bytes(b"c" * size)
    check = LogGrowthCheck(check="log_growth", dirs=[str(logs), str(tmp_path / "absent")],
                           console_logs=str(inst / "*" / "console.log"), console_max_bytes=1000)
    first = check.run(5)
    (logs / "nova-api.log").write_bytes(b"x" * 3000)
    time.sleep(0.05)
    second = check.run(5)
    v = {k: val for k, val, _ in second.values}
    assert v[f"log.dir.size[{logs}]"] == 3000.0 and v[f"log.dir.growth[{logs}]"] > 0
    assert v["nova.console_log.max_size"] == 5000.0 and v["nova.console_log.over_limit"] == 1.0
    assert v["nova.console_log.size[i-2]"] == 5000.0 and "nova.console_log.size[i-1]" not in v
    assert first.status == second.status == "failed: 1 console log(s) over 1000 bytes"
    empty = LogGrowthCheck(check="log_growth", dirs=[str(tmp_path / "no")], console_logs=str(tmp_path / "no/*"))
    assert empty.run(1).status.startswith("skipped: not present")


def test_keepalived_vips() -> None:
    r = KeepalivedCheck(check="keepalived", vips=["127.0.0.1", "192.0.2.77"], config="/nonexistent").run(1)
    assert {k: v for k, v, _ in r.values} == {"keepalived.vip[127.0.0.1]": 1.0, "keepalived.vip[192.0.2.77]": 0.0}
