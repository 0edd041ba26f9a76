"""Each notifier's exact body, against real loopback receivers and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import ssl
from email import policy

import pytest
import trustme
from actions_support import Harness, Receiver, transition
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from conftest import free_port

from telemetry.actions.security import redact, verify

AODH_BODY = {
    "alarm_name": "cpu_high", "alarm_id": "a-1", "severity": "critical", "previous": "ok", "current": "alarm",
    "reason": "Transition to alarm due to 3 samples outside threshold, most recent: 97.5",
    "reason_data": {"type": "threshold", "disposition": "outside", "count": 3, "most_recent": 97.5},
}


async def _one(tmp_path, target_of, *records, n=1, **cfg):
    rx = await Receiver(reply={"status": "success"}).start()
    h = await Harness(tmp_path, **cfg).start()
    try:
        await h.publish(*[r(target_of(rx)) if callable(r) else r for r in records])
        reqs = await rx.wait(n)
        await h.settle()
        return reqs, h.log()
    finally:
        await h.stop()
        await rx.stop()


async def test_webhook_posts_exactly_aodhs_body(tmp_path):
    reqs, _ = await _one(tmp_path, lambda rx: rx.url + "/aodh?x=1",
                         lambda u: transition(actions=[u], evaluated_at="2026-03-02T10:00:01Z"))
    r = reqs[0]
    assert r["method"] == "POST" and r["path"] == "/aodh" and r["query"] == "x=1"
    assert r["json"] == AODH_BODY
    assert r["headers"]["content-type"] == "application/json"
    assert "x-telemetry-signature" not in r["headers"]


async def test_webhook_signature_verifies_with_the_shared_secret(tmp_path):
    reqs, _ = await _one(tmp_path, lambda rx: rx.url, lambda u: transition(actions=[u]), signing_secret="s3cret")
    r = reqs[0]
    assert verify(r["body"], "s3cret", r["headers"]["x-telemetry-signature"])
    assert not verify(r["body"], "other", r["headers"]["x-telemetry-signature"])


async def test_alertmanager_v4_body(tmp_path):
    reqs, _ = await _one(tmp_path, lambda rx: "alertmanager+" + rx.url + "/am",
                         lambda u: transition(actions=[u]), link="https://grafana.example/a/{alarm_id}")
    body = reqs[0]["json"]
    assert reqs[0]["path"] == "/am"
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "telemetry"
    assert body["truncatedAlerts"] == 0 and body["groupLabels"] == {}
    (alert,) = body["alerts"]
    assert alert["status"] == "firing" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["startsAt"] == "2026-03-02T10:00:00Z"
    assert alert["labels"] == {"host": "compute-1", "role": "compute", "resource_id": "vm-1", "meter": "cpu_util",
                               "alarm_id": "a-1", "alarm_name": "cpu_high", "severity": "critical",
                               "alarm_type": "threshold", "alertname": "cpu_high"}
    assert alert["annotations"]["summary"] == AODH_BODY["reason"]
    assert alert["generatorURL"] == "https://grafana.example/a/a-1"
    assert body["commonLabels"] == alert["labels"]


async def test_chat_message_is_readable_with_blocks(tmp_path):
    reqs, _ = await _one(tmp_path, lambda rx: "slack+" + rx.url + "/hooks/T000/B000/XXXX",
                         lambda u: transition(actions=[u]), link="https://dash/{alarm_id}")
    body = reqs[0]["json"]
    assert reqs[0]["path"] == "/hooks/T000/B000/XXXX"
    assert body["text"] == (":red_circle: [CRITICAL] cpu_high is alarm on compute-1 (value 97.5): "
                            f"{AODH_BODY['reason']} <https://dash/a-1|details>")
    assert body["blocks"][0]["text"]["text"].startswith(":red_circle: *cpu_high* is *alarm* (was ok)")
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert fields == ["*Severity*\ncritical", "*Value*\n97.5", "*Host*\ncompute-1", "*Link*\n<https://dash/a-1|a-1>"]


async def test_pagerduty_triggers_then_resolves_with_one_dedup_key(tmp_path):
    rx = await Receiver(default=202, reply={"status": "success", "dedup_key": "x"}).start()
    h = await Harness(tmp_path, pagerduty={"url": rx.url + "/v2/enqueue"}, link="https://dash/{alarm_id}").start()
    try:
        await h.publish(transition(actions=["pagerduty://R0UTINGKEY"]))
        await rx.wait(1)
        await h.publish(transition(actions=["pagerduty://R0UTINGKEY"], previous="alarm", current="ok",
                                   timestamp="2026-03-02T10:05:00Z", reason="back to normal"),
                        transition(actions=["pagerduty://R0UTINGKEY"], previous="ok", current="insufficient data",
                                   alarm_id="a-9", timestamp="2026-03-02T10:06:00Z"))
        await rx.wait(2)
        await h.settle()
        trig, res = rx.requests[0]["json"], rx.requests[1]["json"]
        assert rx.requests[0]["path"] == "/v2/enqueue"
        assert trig == {
            "routing_key": "R0UTINGKEY", "event_action": "trigger", "dedup_key": "a-1/vm-1",
            "payload": {
                "summary": f"[CRITICAL] cpu_high is alarm on compute-1 (value 97.5): {AODH_BODY['reason']}",
                "source": "compute-1", "severity": "critical", "timestamp": "2026-03-02T10:00:00Z",
                "component": "cpu_util", "group": "compute", "class": "threshold",
                "custom_details": {"alarm_id": "a-1", "previous": "ok", "reason": AODH_BODY["reason"],
                                   "reason_data": AODH_BODY["reason_data"],
                                   "labels": trig["payload"]["custom_details"]["labels"]},
            },
            "links": [{"href": "https://dash/a-1", "text": "Alarm"}],
            "client": "OpenStack telemetry", "client_url": "https://dash/a-1",
        }
        assert res == {"routing_key": "R0UTINGKEY", "event_action": "resolve", "dedup_key": "a-1/vm-1"}
        assert len(rx.requests) == 2  # insufficient data pages nobody
        statuses = {r.alarm_id: r.status for r in h.log()}
        assert statuses["a-9"] == "skipped"
        assert all(r.target == "pagerduty://***" for r in h.log())
    finally:
        await h.stop()
        await rx.stop()


async def test_log_action_is_a_dry_run(tmp_path, caplog):
    h = await Harness(tmp_path).start()
    try:
        with caplog.at_level("INFO", logger="telemetry.actions.dryrun"):
            await h.publish(transition(actions=["log://"]))
            await h.settle()
        assert h.log()[0].status == "delivered"
        assert '"alarm_name":"cpu_high"' in caplog.text
    finally:
        await h.stop()


def test_redaction_of_secrets_in_targets():
    assert redact("https://hooks.slack.com/services/T0/B0/abcdef") == "https://hooks.slack.com/services/***"
    assert "Signature=***" in redact("http://heat:8000/v1/signal/arn?Timestamp=1&Signature=abc%2B&AWSAccessKeyId=k")
    assert "AWSAccessKeyId=***" in redact("http://heat:8000/v1/signal/arn?AWSAccessKeyId=k")
    assert redact("https://u:pw@h/x?token=t") == "https://u:***@h/x?token=***"
    assert redact("pagerduty://key") == "pagerduty://***"


# -- mail ---------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    inbox = _Inbox()
    logins = []

    def auth(server, session, envelope, mechanism, data):
        logins.append((mechanism, data.login, data.password))
        return AuthResult(success=(data.login, data.password) == (b"alerts", b"pw"), handled=False)

    port = free_port()
    ctrl = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                      authenticator=auth, auth_require_tls=True)
    ctrl.start()
    yield {"port": port, "ca_file": str(ca_file), "inbox": inbox, "logins": logins}
    ctrl.stop()


async def _mail(tmp_path, smtp_server, password, *records):
    h = await Harness(tmp_path, smtp={"host": "127.0.0.1", "port": smtp_server["port"], "starttls": True,
                                      "username": "alerts", "password": password, "from_addr": "telemetry@example.org",
                                      "ca_file": smtp_server["ca_file"]}, link="https://dash/{alarm_id}").start()
    try:
        await h.publish(*records)
        for _ in range(200):
            if h.log(status="delivered") or h.log(status="dead"):
                break
            await asyncio.sleep(0.05)
        return h.log()
    finally:
        await h.stop()


async def test_email_over_starttls_with_auth(tmp_path, smtp_server):
    log = await _mail(tmp_path, smtp_server, "pw", transition(actions=["mailto:ops@example.org,oncall@example.org"]))
    assert log[0].status == "delivered"
    (env,) = smtp_server["inbox"].messages
    assert env.mail_from == "telemetry@example.org"
    assert env.rcpt_tos == ["ops@example.org", "oncall@example.org"]
    assert smtp_server["logins"][0][1:] == (b"alerts", b"pw")
    msg = email.message_from_bytes(env.original_content, policy=policy.default)
    assert msg["Subject"] == f"[CRITICAL] cpu_high is alarm on compute-1 (value 97.5): {AODH_BODY['reason']}"
    assert msg["To"] == "ops@example.org, oncall@example.org"
    body = msg.get_content()
    for line in ("Alarm:    cpu_high (a-1)", "State:    ok -> alarm", "Value:    97.5", "Host:     compute-1",
                 "Link:     https://dash/a-1"):
        assert line in body


async def test_email_rejected_auth_is_not_retried(tmp_path, smtp_server):
    log = await _mail(tmp_path, smtp_server, "wrong", transition(actions=["mailto:ops@example.org"]))
    assert log[0].status == "dead" and log[0].http_status == 535 and log[0].attempts == 1
    assert not smtp_server["inbox"].messages
