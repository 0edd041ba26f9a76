"""Syslog input: RFC 3164/5424 over UDP and TCP, directly and through a real rsyslogd."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
from pathlib import Path

from agent_support import InProcessAgent, settings

from telemetry.bus import MemoryBus
from telemetry.collect.syslog import parse_syslog
from telemetry.config import Settings
from telemetry.config.sources import SyslogTLS


def syslog_settings(tmp: Path) -> Settings:
    s = settings(tmp, files=[])
    return s.model_copy(update={"sources": s.sources.model_copy(update={
        "syslog": s.sources.syslog.model_copy(update={"enabled": True, "listen": "127.0.0.1:0"})})})


def test_parse_both_rfcs() -> None:
    f = parse_syslog(b"<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed for lonvick on /dev/pts/8")
    assert (f["facility"], f["severity"], f["logsource"], f["program"], f["pid"], f["rfc"]) == \
        (4, 2, "mymachine", "su", "123", "3164")
    assert f["message"] == "'su root' failed for lonvick on /dev/pts/8" and f["tags"] == []
    f = parse_syslog(b'<165>1 2003-10-11T22:14:15.003Z host.example.com evntslog - ID47 '
                     b'[exampleSDID@32473 iut="3" eventSource="Application"] \xef\xbb\xbfAn application event')
    assert (f["priority"], f["logsource"], f["program"], f["pid"], f["msgid"], f["rfc"]) == \
        (165, "host.example.com", "evntslog", None, "ID47", "5424")
    assert f["structured_data"].startswith("[exampleSDID") and f["message"] == "An application event"
    f = parse_syslog(b"no header at all \xff")
    assert f["message"].startswith("no header") and set(f["tags"]) == {"_syslogparsefailure", "invalid_utf8"}


async def test_udp_and_both_tcp_framings(tmp_path: Path) -> None:
    async with InProcessAgent(syslog_settings(tmp_path), MemoryBus()) as agent:
        srv = next(c for c in agent.comps if c.name == "source.syslog")
        host, port = srv.address.rsplit(":", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"<13>Mar  2 09:00:00 node1 nova-api[7]: via udp", (host, int(port)))
        r, w = await asyncio.open_connection(host, int(port))
        a = b"<14>1 2026-03-02T09:00:01Z node1 cinder 9 - - octet\ncounted with newline"
        w.write(str(len(a)).encode() + b" " + a)
        big = b"<14>1 2026-03-02T09:00:01Z node1 big - - - " + b"B" * 200_000
        w.write(str(len(big)).encode() + b" " + big)
        w.write(b"<14>Mar  2 09:00:02 node1 glance: newline framed\n" + b"<14>Mar  2 09:00:03 node1 x: " +
                b"y" * 100_000 + b"\n<14>Mar  2 09:00:04 node1 heat: after long\n")
        await w.drain()
        got = await agent.collect(lambda got: len(got) == 6)
        w.close()
    by = {r.lines[0][:20]: r for r in got}
    assert by["via udp"].component == "nova-api" and by["via udp"].type == "syslog"
    assert by["octet\ncounted with n"].lines == ["octet\ncounted with newline"]
    assert by["octet\ncounted with n"].program == "cinder"  # type: ignore[attr-defined]
    assert "newline framed" in by and "after long" in by
    long = next(r for r in got if r.lines[0].startswith("yyy"))
    assert "truncated" in long.tags and len(long.lines[0]) < 100_000
    big_rec = next(r for r in got if r.component == "big")
    assert "truncated" in big_rec.tags and len(big_rec.lines[0]) < 65536


async def test_through_real_rsyslog(tmp_path: Path) -> None:
    async with InProcessAgent(syslog_settings(tmp_path), MemoryBus()) as agent:
        srv = next(c for c in agent.comps if c.name == "source.syslog")
        port = srv.address.rsplit(":", 1)[1]
        rs = tmp_path / "rs"
        rs.mkdir()
        sock = rs / "log.sock"
        conf = rs / "rsyslog.conf"
        conf.write_text(f"""
global(workDirectory="{rs}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{sock}")
if $msg contains "tcp5424" then action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
    TCP_Framing="octet-counted" Template="RSYSLOG_SyslogProtocol23Format")
if $msg contains "udp3164" then action(type="omfwd" target="127.0.0.1" port="{port}" protocol="udp"
    Template="RSYSLOG_ForwardFormat")
if $msg contains "tcplf" then action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
    Template="RSYSLOG_ForwardFormat")
""")
        proc = subprocess.Popen(["rsyslogd", "-n", "-f", str(conf), "-i", str(rs / "pid")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            for _ in range(100):
                if sock.exists():
                    break
                await asyncio.sleep(0.05)
            for tag, text in [("swift", "tcp5424 object PUT 201"), ("nova", "udp3164 boot ok"),
                              ("cinder", "tcplf volume attached")]:
                subprocess.run(["logger", "-u", str(sock), "-t", tag, "-p", "local0.warning", text], check=True)
            got = await agent.collect(lambda got: len(got) >= 3, timeout=15)
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=10)[0]
    assert len(got) == 3, out
    by = {r.component: r for r in got}
    assert by["swift"].lines == ["tcp5424 object PUT 201"] and by["swift"].rfc == "5424"  # type: ignore[attr-defined]
    assert by["nova"].lines == ["udp3164 boot ok"] and by["nova"].rfc == "3164"  # type: ignore[attr-defined]
    assert by["cinder"].lines == ["tcplf volume attached"]
    assert all(r.severity == 4 and r.facility == 16 for r in got)  # type: ignore[attr-defined]
    assert all(r.host for r in got)


async def test_syslog_over_tls_with_client_certificates(tmp_path: Path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "s.pem", tmp_path / "s.key", tmp_path / "ca.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    s = syslog_settings(tmp_path)
    s = s.model_copy(update={"sources": s.sources.model_copy(update={"syslog": s.sources.syslog.model_copy(update={
        "tls": SyslogTLS(listen="127.0.0.1:0", cert_file=str(cert), key_file=str(key), client_ca_file=str(ca_file))})})})
    async with InProcessAgent(s, MemoryBus()) as agent:
        srv = next(c for c in agent.comps if c.name == "source.syslog")
        host, port = srv.tls_address.rsplit(":", 1)
        anonymous = ssl.create_default_context(cafile=str(ca_file))
        r, w = await asyncio.open_connection(host, int(port), ssl=anonymous)
        w.write(b"<13>Mar  2 09:00:00 node1 nova-api[7]: without a client certificate\n")
        try:
            await w.drain()
            assert await r.read() == b""  # the server closes: no certificate, no message
        except (ssl.SSLError, ConnectionError):
            pass
        w.close()
        client = ssl.create_default_context(cafile=str(ca_file))
        ca.issue_cert("node1").configure_cert(client)
        r, w = await asyncio.open_connection(host, int(port), ssl=client)
        frame = b"<14>1 2026-03-02T09:00:01Z node1 cinder 9 - - over tls"
        w.write(str(len(frame)).encode() + b" " + frame)
        await w.drain()
        got = await agent.collect(lambda got: len(got) >= 1)
        w.close()
    assert [r.lines[0] for r in got] == ["over tls"] and got[0].component == "cinder"
