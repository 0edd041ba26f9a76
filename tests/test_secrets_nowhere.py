"""Every configured secret and every alarm action's secret, grepped out of everything the daemon shows (issue 20).

A daemon is configured with one secret of each kind (API token, Ceilometer
``telemetry_secret``, SMTP, Keystone and signing secrets) and given an alarm
whose actions carry the secrets targets carry (Basic ``user:password@``, a
chat hook path, a PagerDuty routing key, Heat's pre-signed ``Signature=`` and
``AWSAccessKeyId``, a trust password, a ``token=`` query parameter). The
alarm is made to fire, so every notifier runs, httpx logs its requests and
the deliveries fail with errors quoting their URLs. Then the log, /metrics,
/healthz, /openapi.json, ``--print-config``, the error answers and every API
read are searched for each secret.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

TOKEN = "tok-SECRET-api-0001"
CONFIG_SECRETS = {"telemetry": "SECRET-telemetry-0002", "smtp": "SECRET-smtp-0003",
                  "keystone": "SECRET-keystone-0004", "signing": "SECRET-signing-0005",
                  "api-keystone": "SECRET-api-keystone-0013"}
ACTION_SECRETS = ["SECRET-basic-0006", "SECRET-slack-0007", "SECRET-pd-0008", "SECRETAKID0009", "SECRET-sig-0010",
                  "SECRET-trust-0011", "SECRET-query-0012"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[str]]]:
    """A webhook receiver on loopback, so one action really is sent (and httpx logs it)."""
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            paths.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], paths
    server.shutdown()


def _targets(port: int) -> list[str]:
    return [
        "http://hookuser:SECRET-basic-0006@hooks.example.org/notify",
        "slack+https://chat.example.org/hooks/SECRET-slack-0007",
        "pagerduty://SECRET-pd-0008",
        "http://heat.example.org:8000/v1/signal/arn%3Aopenstack%3Aheat%3A%3At%3Astacks%2Fs%2Fi%2Fresources%2Fup"
        "?Timestamp=2026-01-01T00%3A00%3A00Z&SignatureMethod=HmacSHA256&AWSAccessKeyId=SECRETAKID0009"
        "&SignatureVersion=2&Signature=SECRET-sig-0010",
        "trust+http://trustee:SECRET-trust-0011@heat.example.org:8004/v1/t/stacks/s/i/resources/p/signal",
        f"http://127.0.0.1:{port}/hook?token=SECRET-query-0012",
    ]


def test_no_secret_anywhere(daemon_factory, receiver) -> None:
    port, received = receiver
    d = daemon_factory(config={
        "api": {"tokens": [TOKEN], "keystone": {"auth_url": "http://keystone.example.org:5000/v3", "username": "svc",
                                                "password": CONFIG_SECRETS["api-keystone"], "project_name": "service",
                                                "timeout": "2s"}},
        "sources": {"ceilometer": {"enabled": False, "telemetry_secret": CONFIG_SECRETS["telemetry"]},
                    "files": [], "zabbix": {"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0"}},
        "actions": {"max_attempts": 1, "timeout": "3s", "signing_secret": CONFIG_SECRETS["signing"],
                    "allowed_targets": ["*.example.org", "127.0.0.0/8"],
                    "smtp": {"username": "alarms", "password": CONFIG_SECRETS["smtp"]},
                    "heat": {"keystone": {"auth_url": "http://keystone.example.org:5000/v3", "username": "aodh",
                                          "password": CONFIG_SECRETS["keystone"], "project_name": "service"}}},
    }).start()
    alarm = {"name": "leaky", "type": "threshold", "threshold_rule": {"meter_name": "cpu_util", "threshold": 90},
             "alarm_actions": _targets(port)}
    created = httpx.post(d.url + "/v2/alarms", json=alarm, headers=AUTH)
    assert created.status_code == 201, created.text
    aid = created.json()["alarm_id"]
    shown: list[tuple[str, str]] = [("POST /v2/alarms", created.text)]
    # aodh alarm update writes back what it read: the real targets stay, still redacted when read.
    back = httpx.get(d.url + f"/v2/alarms/{aid}", headers=AUTH).json()
    updated = httpx.put(d.url + f"/v2/alarms/{aid}", json={**back, "description": "edited"}, headers=AUTH)
    assert updated.status_code == 200, updated.text
    shown.append(("PUT /v2/alarms/{id}", updated.text))
    assert httpx.put(d.url + f"/v2/alarms/{aid}/state", json="alarm", headers=AUTH).status_code == 200

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log = httpx.get(d.url + "/v1/actions/deliveries", params={"alarm_id": aid}, headers=AUTH).json()
        if received and len({r["target"] for r in log if r["status"] in ("delivered", "dead", "blocked")}) >= 6:
            break
        time.sleep(0.3)
    assert received == ["/hook?token=SECRET-query-0012"], "the local action was not sent with its real target"
    assert "HTTP Request: POST http://127.0.0.1" in d.output(), "httpx's own INFO line is not in the log"

    for path in ("/v2/alarms", f"/v2/alarms/{aid}", f"/v2/alarms/{aid}/history", "/v1/actions/deliveries",
                 "/v1/actions/dead-letters", "/openapi.json", "/healthz", "/metrics"):
        r = httpx.get(d.url + path, headers=AUTH)
        assert r.status_code in (200, 503), (path, r.status_code)
        shown.append((path, r.text))
    shown.append(("401", httpx.get(d.url + "/v2/alarms", headers={"Authorization": "Bearer wrong"}).text))
    bad = httpx.post(d.url + "/v2/alarms", json={**alarm, "name": "leaky2", "type": "nope"}, headers=AUTH)
    assert bad.status_code == 400
    shown.append(("400", bad.text))
    printed = subprocess.run([sys.executable, "-m", "telemetry", "run", "--print-config", "-c", str(d.config_path)],
                             capture_output=True, text=True, timeout=60)
    shown.append(("--print-config", printed.stdout + printed.stderr))
    cli = subprocess.run([sys.executable, "-m", "telemetry", "alarm-history", aid, "--url", d.url, "--token", TOKEN,
                          "-f", "json"], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    shown.append(("alarm-history", cli.stdout))
    d.stop()
    shown.append(("daemon log", d.output()))
    assert "***" in "".join(text for _, text in shown)
    leaked = {f"{secret} in {where}" for secret in [TOKEN, *CONFIG_SECRETS.values(), *ACTION_SECRETS]
              for where, text in shown if secret in text}
    assert not leaked, sorted(leaked)
