"""The Zabbix listeners and role-template checks inside the real daemon, all-in-one and split over RabbitMQ."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import httpx
import yaml
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


class _Hooks(http.server.ThreadingHTTPServer):
    """A webhook receiver on a loopback port, recording each POST's JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                hooks.bodies.append(json.loads(self.rfile.read(n) or b"null"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


def test_split_agent_template_trigger_fires_its_webhook(daemon_factory, tmp_path) -> None:
    """agent (role template) -> RabbitMQ -> server: the template's trigger fires and its action's webhook arrives."""
    hooks = _Hooks()
    rules = tmp_path / "site-rules"
    rules.mkdir()
    (rules / "probe.yaml").write_text(yaml.safe_dump({
        "template": "probe",
        "checks": [{"key": "agent.ping", "interval": "1s"}],
        "triggers": [{"name": "Probe agent on {HOST.HOST} is alive", "expression": "last(/{HOST.HOST}/agent.ping)=1",
                      "severity": "high", "tags": {"team": "ops"}}],
        "trigger_actions": [{"name": "ops webhook", "min_severity": "average", "tags": {"team": "ops"},
                             "actions": [hooks.url]}],
    }))
    prefix = f"t-zbx-{uuid.uuid4().hex[:8]}."
    bus = {"url": RABBIT, "topic_prefix": prefix, "publish_timeout": "20s"}
    host = f"probe-{uuid.uuid4().hex[:6]}"
    server = daemon_factory(mode="server", sub="server", config={
        "bus": bus, "rules": {"paths": ["rules/", str(rules)]}}).start()
    server.wait_healthy(30)
    agent = daemon_factory(mode="agent", sub="agent", config={
        "bus": bus, "host": host,
        "sources": {"files": [], "checks": {"templates": ["probe"], "template_paths": [str(rules)]}}}).start()
    try:
        body = _until(lambda: next((b for b in hooks.bodies if b and b.get("alarm_name") ==
                                    f"Probe agent on {host} is alive"), None), timeout=60, what="the webhook")
        assert body["current"] == "alarm" and body["previous"] == "ok"
        assert body["severity"] == "critical"  # Zabbix's high, on Aodh's scale
        assert body["reason_data"]["severity"] == "high" and body["reason_data"]["host"] == host
        out = subprocess.run([sys.executable, "-m", "telemetry", "trigger-list", "--url", server.url, "--problems"],
                             capture_output=True, text=True, timeout=30, env={**os.environ, "COLUMNS": "250"})
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        header = next(line for line in lines if "Severity" in line)
        cols = ["Severity", "Status", "Info", "Last change", "Age", "Acknowledged", "Host", "Name"]
        assert [header.index(c) for c in cols] == sorted(header.index(c) for c in cols), header
        assert any("High" in line and "PROBLEM" in line and host in line for line in lines), out.stdout
    finally:
        assert agent.stop() == 0
        assert server.stop() == 0
        hooks.shutdown()
    assert "Traceback" not in agent.output() + server.output()
