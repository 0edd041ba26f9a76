"""Alarm creation refuses what would never work and warns about what would never leave insufficient data."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from support import wait_until
from telemetry.actions.security import allowlist_for


def _alarm(name: str, actions: list[str], period: int = 60, meter: str = "cpu_util") -> dict:
    return {"name": name, "type": "threshold", "alarm_actions": actions,
            "threshold_rule": {"meter_name": meter, "threshold": 50, "comparison_operator": "gt", "period": period}}


def test_the_all_in_one_lets_alarms_reach_this_host_and_refuses_the_rest_at_creation(daemon_factory) -> None:
    d = daemon_factory("run").start()
    ok = httpx.post(d.url + "/v2/alarms", json=_alarm("local", ["http://127.0.0.1:9/hook"]), timeout=10)
    assert ok.status_code == 201, ok.text
    bad = httpx.post(d.url + "/v2/alarms", json=_alarm("private", ["http://10.255.255.1/hook"]), timeout=10)
    assert bad.status_code == 400
    text = bad.json()["error_message"]["faultstring"]
    assert "alarm_actions[0]" in text and "10.255.255.1" in text and "actions.allowed_targets" in text
    unknown = httpx.post(d.url + "/v2/alarms", json=_alarm("odd", ["gopher://x/"]), timeout=10)
    assert unknown.status_code == 400 and "no notifier handles" in unknown.text
    names = {a["name"] for a in httpx.get(d.url + "/v2/alarms", timeout=10).json()}
    assert "local" in names and not names & {"private", "odd"}
    assert "may also reach webhooks on this host" in d.output()


def test_a_server_with_tokens_keeps_the_list_strict_but_trusts_heat(daemon_factory) -> None:
    d = daemon_factory("run", {"api": {"port": 0, "tokens": ["t0k"]},
                               "actions": {"heat": {"endpoints": ["http://127.0.0.1:8004"]}}}).start()
    auth = {"Authorization": "Bearer t0k"}
    r = httpx.post(d.url + "/v2/alarms", json=_alarm("local", ["http://127.0.0.1:9/hook"]), headers=auth, timeout=10)
    assert r.status_code == 400 and "api.tokens is set" in r.text and "127.0.0.1" in r.text
    heat = "trust+http://127.0.0.1:8004/v1/p/stacks/s/1/resources/policy/signal"
    r = httpx.post(d.url + "/v2/alarms", json=_alarm("heat", [heat]), headers=auth, timeout=10)
    assert r.status_code == 201, r.text
    assert "may reach public addresses, actions.allowed_targets and Heat's endpoints only (api.tokens is set)" \
        in d.output()


def test_a_period_shorter_than_the_sampling_interval_is_warned_about(daemon_factory) -> None:
    d = daemon_factory("run").start()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    body = [{"counter_name": "slow.meter", "counter_type": "gauge", "counter_unit": "%", "counter_volume": 5,
             "resource_id": "r1", "message_id": str(uuid.uuid4()), "timestamp": (now - timedelta(seconds=s)).isoformat()}
            for s in (1800, 1200, 600)]
    assert httpx.post(d.url + "/v2/meters/slow.meter", json=body, timeout=10).status_code == 201
    wait_until(lambda: len(httpx.get(d.url + "/v2/meters/slow.meter", timeout=5).json()) == 3, what="samples stored")
    r = httpx.post(d.url + "/v2/alarms", json=_alarm("too-short", [], 60, "slow.meter"), timeout=10)
    assert r.status_code == 201
    warning = r.json()["warnings"][0]
    assert "period 60s is shorter than the interval slow.meter arrives at (600s)" in warning
    assert "insufficient data" in warning and "299 telemetry" in r.headers["warning"]
    assert "too-short" in d.output() and "600s" in d.output()
    r = httpx.post(d.url + "/v2/alarms", json=_alarm("long-enough", [], 600, "slow.meter"), timeout=10)
    assert r.status_code == 201 and "warnings" not in r.json()


@pytest.mark.parametrize("host,tokens,local", [("127.0.0.1", 0, True), ("::1", 0, True), ("0.0.0.0", 0, False),
                                               ("127.0.0.1", 1, False)])
def test_this_hosts_targets_only_for_a_loopback_api_without_tokens(host: str, tokens: int, local: bool) -> None:
    al = allowlist_for(host, tokens, [], [])
    assert (asyncio.run(al.check("http://127.0.0.1:8080/x")) is None) is local
    assert asyncio.run(al.check("http://169.254.169.254/latest")) is not None
