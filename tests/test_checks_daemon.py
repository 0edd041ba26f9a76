"""The Zabbix listeners and role-template checks inside the real daemon, all-in-one and split over RabbitMQ."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from zabbix_utils import Getter, Sender

RABBIT = "amqp://guest:guest@127.0.0.1:5672/"


def _until(fn: Any, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def _samples(url: str, meter: str, resource: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/v2/meters/{meter}", params={"q.field": "resource_id", "q.op": "eq", "q.value": resource})
    return r.json() if r.status_code == 200 else []


def test_run_serves_zabbix_protocols_and_runs_the_role_template(daemon_factory) -> None:
    host = f"aio-{uuid.uuid4().hex[:6]}"
    d = daemon_factory(config={"host": host, "sources": {"checks": {"templates": ["controller"], "params": {
        "postgresql": {"url": "postgresql://postgres@127.0.0.1:5432/test"}}}}})
    health = d.start().wait_healthy()
    comps = health["components"]
    for name in ("source.zabbix_trapper", "source.zabbix_passive", "source.checks", "source.cpu_collector"):
        assert comps[name]["state"] == "running", (name, comps.get(name))
    trapper, passive = (int(d.listen(c).rsplit(":", 1)[1]) for c in ("source.zabbix_trapper", "source.zabbix_passive"))
    assert trapper > 0 and passive > 0

    resp = Sender(server="127.0.0.1", port=trapper).send_value("sender-host", "custom.depth", 12)
    assert (resp.processed, resp.failed, resp.total) == (1, 0, 1)
    got = _until(lambda: _samples(d.url, "custom.depth", "sender-host"), what="the sender's value stored")
    assert got[0]["counter_volume"] == 12.0

    assert Getter(port=passive).get("agent.ping").value == "1"
    assert Getter(port=passive).get("agent.hostname").value == host

    ping = _until(lambda: _samples(d.url, "agent.ping", host), what="the template's agent.ping stored")
    assert ping[0]["resource_metadata"]["role"] == "controller"
    status = _until(lambda: httpx.get(d.url + "/healthz").json()["components"]["source.checks"]["status"]
                    .get("galera"), what="the galera check's status")
    assert status.startswith("skipped: not present")
    triggers = httpx.get(d.url + "/v1/triggers", params={"host": host}).json()
    assert any(t["name"] == f"High CPU load on {host}" for t in triggers)

    metrics = httpx.get(d.url + "/metrics").text
    assert 'telemetry_zabbix_values_total{component="source.zabbix_trapper",result="processed"} 1.0' in metrics
    assert "telemetry_checks_runs_total" in metrics
    assert d.stop() == 0
    assert "Traceback" not in d.output()


def test_split_agent_role_binds_its_template_on_the_server(daemon_factory) -> None:
    """agent -> RabbitMQ -> server: the compute template's triggers bind to the agent's host by its role."""
    prefix = f"t-zbx-{uuid.uuid4().hex[:8]}."
    bus = {"url": RABBIT, "topic_prefix": prefix, "publish_timeout": "20s"}
    host = f"cmp-{uuid.uuid4().hex[:6]}"
    server = daemon_factory(mode="server", config={"bus": bus}, sub="server").start()
    server.wait_healthy(30)
    agent = daemon_factory(mode="agent", sub="agent", config={
        "bus": bus, "host": host, "sources": {"files": [], "checks": {"templates": ["compute"]}}}).start()
    try:
        triggers = _until(lambda: httpx.get(server.url + "/v1/triggers", params={"host": host}).json(),
                          timeout=60, what="the compute template bound on the server")
        names = {t["name"] for t in triggers}
        assert f"Telemetry on {host} stopped reporting" in names and f"Swap nearly exhausted on {host}" in names
        assert all(t["template"] == "compute" for t in triggers)
        got = _until(lambda: _samples(server.url, "agent.ping", host), timeout=60, what="agent.ping stored")
        assert got[0]["resource_metadata"]["role"] == "compute"
    finally:
        assert agent.stop() == 0
        assert server.stop() == 0
    assert "Traceback" not in agent.output() + server.output()
