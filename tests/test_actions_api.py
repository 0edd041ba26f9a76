"""Actions API and CLI against a real `telemetry run` subprocess."""

from __future__ import annotations

import json

import httpx
from click.testing import CliRunner

from telemetry.cli import main


def _cli(*args: str) -> str:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def test_silences_allowlist_and_delivery_log_through_api_and_cli(daemon_factory):
    d = daemon_factory(config={"api": {"tokens": ["t0k"]}}).start()
    auth = {"Authorization": "Bearer t0k"}
    body = {"matchers": ["host=compute-1", "role=~comp.*"], "ends_at": "2099-01-01T00:00:00Z", "comment": "kernel"}
    # Mutations need the token.
    assert httpx.post(d.url + "/v1/silences", json=body).status_code == 401
    bad = httpx.post(d.url + "/v1/silences", json={**body, "matchers": ["nonsense"]}, headers=auth)
    assert bad.status_code == 400 and "expected name=value" in bad.json()["error_message"]["faultstring"]
    bad = httpx.post(d.url + "/v1/silences", json={**body, "ends_at": "2000-01-01T00:00:00Z"}, headers=auth)
    assert bad.status_code == 400 and "ends_at must be after starts_at" in bad.text

    created = json.loads(_cli("silence-create", "--url", d.url, "--token", "t0k", "-m", "host=compute-1",
                              "-m", "role=compute", "--duration", "2h", "--comment", "reboot", "-f", "json"))
    assert [m["name"] for m in created["matchers"]] == ["host", "role"] and created["comment"] == "reboot"
    # Reads need a token too once tokens are set (issue 20).
    assert httpx.get(d.url + "/v1/silences").status_code == 401
    listed = json.loads(_cli("silence-list", "--url", d.url, "--token", "t0k", "--active", "-f", "json"))
    assert [s["id"] for s in listed] == [created["id"]]
    assert "reboot" in _cli("silence-list", "--url", d.url, "--token", "t0k")
    assert httpx.delete(d.url + f"/v1/silences/{created['id']}").status_code == 401
    _cli("silence-delete", "--url", d.url, "--token", "t0k", created["id"])
    assert httpx.get(d.url + "/v1/silences", headers=auth).json() == []
    assert httpx.get(d.url + f"/v1/silences/{created['id']}", headers=auth).status_code == 404

    r = httpx.put(d.url + "/v1/actions/allowlist", json={"targets": ["10.0.0.0/8", "*.example.org"]}, headers=auth)
    assert r.status_code == 200 and r.json()["targets"] == ["10.0.0.0/8", "*.example.org"]
    r = httpx.put(d.url + "/v1/actions/allowlist", json={"targets": ["not a host!"]}, headers=auth)
    assert r.status_code == 400

    assert httpx.get(d.url + "/v1/actions/deliveries", headers=auth).json() == []
    assert json.loads(_cli("action-log", "--url", d.url, "--token", "t0k", "-f", "json")) == []
    assert httpx.get(d.url + "/v1/actions/dead-letters", headers=auth).json() == []
    health = httpx.get(d.url + "/healthz").json()
    assert "actions" in json.dumps(health)
    assert "telemetry_actions_outbox_pending" in httpx.get(d.url + "/metrics").text
    assert d.stop() == 0
    assert (d.tmp / "data" / "actions" / "outbox.sqlite").exists()
