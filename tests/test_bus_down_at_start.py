"""The bus down when a daemon starts: the agent starts and spools, the server retries; SIGTERM at once in both."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest
from busenv import RABBIT, rabbitmqctl

from support import wait_until

SAMPLE_LINE = ("{ts} 2931 ERROR nova.compute.manager [req-{rid} - - - - -] [instance: 0c2d6b3e] "
               "Instance failed to spawn\n")


def _attempt_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " is down (" in line]


@pytest.mark.parametrize("where", ["closed port", "missing vhost"])
def test_the_server_retries_one_line_an_attempt_and_stops_at_once(daemon_factory, where: str) -> None:
    url = ("amqp://guest:s3cretpw@127.0.0.1:1/" if where == "closed port"
           else f"amqp://guest:guest@{RABBIT}/missing-{uuid.uuid4().hex[:8]}")
    d = daemon_factory("server", {"bus": {"url": url}}).start(wait=False)
    wait_until(lambda: len(_attempt_lines(d.output())) >= 2, timeout=20, what="two attempts")
    t0 = time.monotonic()
    assert d.stop(signal.SIGTERM, timeout=5) == 0
    assert time.monotonic() - t0 < 1.5, "SIGTERM was not honoured at once"
    out = d.output()
    assert "Traceback" not in out and "s3cretpw" not in out
    lines = _attempt_lines(out)
    assert "attempt 1, retrying" in lines[0] and "attempt 2, retrying" in lines[1]
    if where == "missing vhost":
        assert "NOT_ALLOWED" in lines[0] and "not found" in lines[0]


def test_the_agent_starts_spools_and_ships_when_the_bus_returns(daemon_factory, tmp_path: Path) -> None:
    vhost = f"late-{uuid.uuid4().hex[:8]}"
    url = f"amqp://guest:guest@{RABBIT}/{vhost}"
    bus = {"url": url, "publish_timeout": "2s"}
    agent = daemon_factory("agent", {"bus": bus, "sources": {
        "files": [{"paths": [str(tmp_path / "logs" / "*.log")], "fields": {"type": "openstack", "component": "nova"}}],
        "ceilometer": {"enabled": False}, "host_metrics": {"enabled": False},
        "agent": {"publish_timeout": "1s"}}}, sub="agent")
    (tmp_path / "logs").mkdir()
    agent.start()
    assert "the agent starts anyway" in agent.output()
    rid = str(uuid.uuid4())
    ts = time.strftime("%Y-%m-%d %H:%M:%S.000", time.gmtime())
    (tmp_path / "logs" / "nova-compute.log").write_text(SAMPLE_LINE.format(ts=ts, rid=rid))

    def spooled() -> bool:
        h = httpx.get(agent.url + "/healthz", timeout=5).json()["components"]["agent.shipper"]
        return h["bus_down"] and h["spool_batches"] >= 1

    wait_until(spooled, timeout=30, what="the agent spooling")
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        server = daemon_factory("server", {"bus": {"url": url}}, sub="server").start()

        def found() -> bool:
            r = httpx.get(server.url + "/v1/events", params={"q": f'request_id:"req-{rid}"', "start": "-1d"}, timeout=5)
            return r.status_code == 200 and len(r.json()) == 1

        wait_until(found, timeout=60, what="the spooled line searchable on the server")
        t0 = time.monotonic()
        assert agent.stop(signal.SIGTERM, timeout=5) == 0 and server.stop(signal.SIGTERM, timeout=5) == 0
        assert time.monotonic() - t0 < 6
        assert "Traceback" not in agent.output() + server.output()
    finally:
        rabbitmqctl("delete_vhost", vhost)
