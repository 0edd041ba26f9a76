"""What an alarm's actions may reach, decided again at send time; what reads show of them (issue 20)."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from telemetry.actions.delivery import Http
from telemetry.actions.security import UNTRUSTED, AllowList, redact_actions, restore_redacted
from telemetry.config import Settings
from telemetry.daemon import Daemon
from telemetry.logsetup import JsonFormatter, RedactingFormatter

PUBLIC = "93.184.216.34"


class Receiver:
    """An HTTP server on loopback that counts what reaches it."""

    def __init__(self) -> None:
        self.hits = 0

    async def __aenter__(self) -> Receiver:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.hits += 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.server.close()


def rebinding(monkeypatch: pytest.MonkeyPatch, answers: list[str]) -> list[str]:
    """``rebind.test`` resolves to each of ``answers`` in turn (the last one from then on)."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: list[str] = []

    async def fake(host: Any, *args: Any, **kw: Any) -> Any:
        if host == "rebind.test":
            asked.append(host)
            addr = answers[min(len(asked), len(answers)) - 1]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (addr, 0))]
        return await real(host, *args, **kw)
    monkeypatch.setattr(loop, "getaddrinfo", fake)
    return asked


async def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused_at_connect(monkeypatch) -> None:
    async with Receiver() as rx:
        asked = rebinding(monkeypatch, [PUBLIC, "127.0.0.1"])
        allow = AllowList([])  # public addresses only
        url = f"http://rebind.test:{rx.port}/hook"
        assert await allow.check(url) is None  # the check at creation sees the public address
        http = Http(5.0, allowlist=allow)
        UNTRUSTED.set(True)
        out = await http.send("POST", url, content=b"{}")
        await http.close()
        assert not out.ok and not out.retry and "refused at connect time" in out.error and "127.0.0.1" in out.error
        assert rx.hits == 0 and len(asked) == 2


async def test_the_guarded_client_connects_to_the_address_it_checked(monkeypatch) -> None:
    async with Receiver() as rx:
        rebinding(monkeypatch, ["127.0.0.1"])
        http = Http(5.0, allowlist=AllowList(["127.0.0.0/8"]))
        UNTRUSTED.set(True)
        out = await http.send("POST", f"http://rebind.test:{rx.port}/hook", content=b"{}")
        await http.close()
        assert out.ok and rx.hits == 1


async def test_trusted_deliveries_use_the_plain_client(monkeypatch) -> None:
    async with Receiver() as rx:
        http = Http(5.0, allowlist=AllowList([]))  # would refuse loopback
        UNTRUSTED.set(False)  # a rule file's alarm
        out = await http.send("POST", f"http://127.0.0.1:{rx.port}/hook", content=b"{}")
        await http.close()
        assert out.ok and rx.hits == 1


def test_reads_redact_and_writes_restore_only_the_alarms_own_targets() -> None:
    real = ["https://chat.example.org/hooks/T0/B0/xyz", "http://u:pw@h.example.org/a", "log://x"]
    shown = redact_actions({"alarm_actions": real, "name": "n"}, ("alarm_actions",))
    assert shown == {"alarm_actions": ["https://chat.example.org/hooks/***", "http://u:***@h.example.org/a", "log://x"],
                     "name": "n"}
    assert restore_redacted(shown["alarm_actions"], real) == real
    # Another alarm's redacted form is not this alarm's secret: it stays as sent.
    assert restore_redacted(["http://u:***@other.example.org/a"], real) == ["http://u:***@other.example.org/a"]


@pytest.mark.parametrize("formatter", [RedactingFormatter("%(message)s"), JsonFormatter()])
def test_every_url_in_a_log_line_is_redacted(formatter: logging.Formatter) -> None:
    url = ("http://heat:8000/v1/signal/x?Timestamp=1&AWSAccessKeyId=AKID1&Signature=SIG1 and "
           "https://hooks.slack.com/services/T/B/HOOK1 and amqp://user:PW1@broker/")
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: POST %s "HTTP/1.1 200 OK"',
                               (url,), None)
    text = formatter.format(record)
    for secret in ("AKID1", "SIG1", "HOOK1", "PW1"):
        assert secret not in text
    assert "http://heat:8000/v1/signal/x?Timestamp=1" in text


async def test_an_alarm_from_a_rules_file_edited_through_the_api_becomes_an_api_alarm(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "ops.yaml").write_text(
        "alarms:\n  - {name: ops, type: log, log_rule: {query: 'level:ERROR'}, alarm_actions: ['log://ops']}\n")
    settings = Settings(data_dir=tmp_path / "data", api={"port": 0}, rules={"paths": [str(tmp_path / "rules")]})
    d = Daemon(settings, mode="server")
    rt = await d.start()
    try:
        async with httpx.AsyncClient(base_url=rt.api_address) as c:
            [alarm] = [a for a in (await c.get("/v2/alarms")).json() if a["name"] == "ops"]
            assert alarm["origin"] != "api"
            r = await c.put(f"/v2/alarms/{alarm['alarm_id']}", json={**alarm, "description": "edited"})
            assert r.status_code == 200, r.text
            assert r.json()["origin"] == "api"
            assert rt.rules is not None
            edited = rt.rules.alarm(alarm["alarm_id"])
            assert edited is not None and edited.origin == "api"
    finally:
        await d.stop()


async def test_webhooks_verify_certificates_by_default(tmp_path: Path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    hits = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hits
        hits += 1
        writer.close()
    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        http = Http(5.0, allowlist=AllowList(["127.0.0.0/8"]))
        for untrusted in (False, True):  # the plain client and the guarded one alike
            UNTRUSTED.set(untrusted)
            out = await http.send("POST", f"https://127.0.0.1:{port}/hook", content=b"{}")
            assert not out.ok and "CERTIFICATE_VERIFY_FAILED" in out.error, out.error
        await http.close()
    finally:
        server.close()
    assert hits == 0  # no request ever reached the handler
