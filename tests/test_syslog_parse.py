"""Syslog end to end: TCP framing that survives bad frames, and headers and messages parsed into events.

rsyslog (Debian's) forwards Swift and HAProxy lines in RFC 5424 (octet-counted TCP) and RFC 3164
(UDP and newline-framed TCP) to a running daemon; the stored events carry the header's level and
time and the fields their app name's parser gives.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
from agent_support import InProcessAgent
from conftest import free_port
from hypothesis import given, settings
from hypothesis import strategies as st
from test_agent_syslog import syslog_settings

from telemetry.bus import MemoryBus
from telemetry.collect.syslog import frames
from telemetry.parse import Parser
from telemetry.parse.syslog import header_captures
from telemetry.collect.syslog import parse_syslog

LIMIT = 512


async def read_all(data: bytes, limit: int = LIMIT) -> list[tuple[bytes, bool]]:
    reader = asyncio.StreamReader(limit=limit + 64)
    reader.feed_data(data)
    reader.feed_eof()
    return [f async for f in frames(reader, limit)]


_GOOD = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=60).map(
    lambda s: f"<14>Mar  2 09:00:00 h app: {s}".encode())
#: Garbage: anything without a newline that is not itself an octet count ("LEN SP").
_BAD = st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")).filter(
    lambda b: not (b[:1].isdigit() and b" " in b[:12] and b[:b.index(b" ")].isdigit()))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_BAD, _GOOD, st.booleans()), max_size=8))
def test_good_frames_survive_the_bad_ones(parts: list[tuple[bytes, bytes, bool]]) -> None:
    stream = b""
    for bad, good, counted in parts:
        stream += bad + b"\n"
        stream += (str(len(good)).encode() + b" " + good) if counted else good + b"\n"
    got = [f for f, _ in asyncio.run(asyncio.wait_for(read_all(stream), 5))]
    goods = [g for _, g, _ in parts]
    it = iter(got)
    assert all(any(f == g for f in it) for g in goods), (goods, got)  # in order, none lost


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_crash_or_hang(data: bytes) -> None:
    got = asyncio.run(asyncio.wait_for(read_all(data), 5))
    assert all(len(f) <= LIMIT for f, _ in got)
    for f, _ in got:
        parse_syslog(f)  # the header parser takes whatever framing gave it


async def test_digit_led_line_keeps_the_connection(tmp_path: Path) -> None:
    async with InProcessAgent(syslog_settings(tmp_path), MemoryBus()) as agent:
        srv = next(c for c in agent.comps if c.name == "source.syslog")
        host, port = srv.address.rsplit(":", 1)
        r, w = await asyncio.open_connection(host, int(port))
        w.write(b"12x 34\n<14>Mar  2 09:00:02 node1 glance: after the bad frame\n"
                b"99999999999999 not a count either\n0 \n<14>Mar  2 09:00:03 node1 heat: still here\n")
        await w.drain()
        got = await agent.collect(lambda got: any(r.lines == ["still here"] for r in got))
        w.close()
    texts = [r.lines[0] for r in got]
    assert "after the bad frame" in texts and "still here" in texts
    assert "12x 34" in texts  # shipped whole and tagged, never dropped
    assert "_syslogparsefailure" in next(r for r in got if r.lines[0] == "12x 34").tags


def test_header_fields_and_app_name_dispatch() -> None:
    f = parse_syslog(b"<130>1 2026-03-02T09:14:00.250+01:00 lb01 haproxy 1402 - [meta seq=\"7\" x=\"a\\\"b\"] "
                     b"10.0.0.57:51234 [02/Mar/2026:09:14:00.104] fe be/srv 0/0/1/85/86 503 1893 - - ---- "
                     b"1/1/1/1/0 0/0 \"GET /v2.1/servers HTTP/1.1\"")
    msg = f.pop("message")
    header = header_captures(f)
    assert header is not None and header["sd"] == {"meta": {"seq": "7", "x": 'a"b'}}
    ev = Parser().parse_dict(msg, "syslog", {"host": "lb01", "component": "haproxy"}, header=header)
    assert ev is not None
    assert (ev["level"], ev["@timestamp"], ev["facility_label"], ev["severity_label"]) == \
        ("CRITICAL", "2026-03-02T08:14:00.250000Z", "local0", "critical")
    assert (ev["http_status_code"], ev["backend_name"], ev["program"], ev["pid"]) == (503, "be", "haproxy", 1402)
    assert ev["message"] == msg and ev["tags"] == []
    # an app with no parser of its own keeps its message, with no failure tag
    f = parse_syslog(b"<13>Mar  2 09:00:05 cn01 systemd[1]: Started OpenStack Compute.")
    msg = f.pop("message")
    ev = Parser().parse_dict(msg, "syslog", header=header_captures(f))
    assert ev is not None and ev["tags"] == [] and ev["level"] == "INFO" and ev["message"] == msg
    # a listener configured for one type parses every message with it
    ev = Parser().parse_dict("VRRP_Script(chk) failed", "keepalived", header={"priority": 28, "program": "x"})
    assert ev is not None and (ev["vrrp_script"], ev["level"]) == ("chk", "WARNING")


def _events(url: str, q: str) -> list[dict]:
    return httpx.get(url + "/v1/events", params={"q": q, "limit": 100, "order": "asc"}).json()


def test_rsyslog_forwards_swift_and_haproxy_into_stored_events(daemon_factory, tmp_path: Path) -> None:
    port = free_port()
    d = daemon_factory("run", {"store": {"ttl": {"events": "3650d"}},
                               "sources": {"files": [], "syslog": {"enabled": True, "listen": f"127.0.0.1:{port}"}}}).start()
    rs = tmp_path / "rs"
    rs.mkdir()
    udp_in = free_port(socket.SOCK_DGRAM)
    conf = rs / "rsyslog.conf"
    conf.write_text(f"""
global(workDirectory="{rs}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{udp_in}")
if $msg contains "via5424" then action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
    TCP_Framing="octet-counted" Template="RSYSLOG_SyslogProtocol23Format")
if $msg contains "via3164" then action(type="omfwd" target="127.0.0.1" port="{port}" protocol="udp"
    Template="RSYSLOG_ForwardFormat")
if $msg contains "viatcplf" then action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
    Template="RSYSLOG_ForwardFormat")
""")
    proc = subprocess.Popen(["rsyslogd", "-n", "-f", str(conf), "-i", str(rs / "pid")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    swift = ("10.0.0.11 10.0.0.11 02/Mar/2026/09/50/11 GET /v1/AUTH_x/backups/db.tar.gz HTTP/1.0 200 - "
             "python-swiftclient-3.13.1 - - 10485760 - tx7f3e-via5424 - 0.2181 - - 1677750611.31 1677750611.53 0")
    haproxy = ("10.0.0.57:51234 [02/Mar/2026:09:14:00.104] nova_api nova_api/cc01 0/0/1/85/86 {status} 1893 - - "
               "---- 12/12/3/1/0 0/0 \"GET /v2.1/servers/{marker} HTTP/1.1\"")
    sends = [
        f"<134>Mar  2 09:50:11 st01 proxy-server: {swift}",  # local0.info, 3164 in, 5424 out
        f"<131>Mar  2 09:14:00 lb01 haproxy[1402]: {haproxy.format(status=503, marker='via3164')}",  # local0.err
        f"<130>Mar  2 09:14:01 lb01 haproxy[1402]: {haproxy.format(status=502, marker='viatcplf')}",  # local0.crit
        "<132>Mar  2 09:50:12 st01 proxy-server: via5424 Handoff requested (1)",  # local0.warning
    ]
    try:
        time.sleep(1.0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for line in sends:
                s.sendto(line.encode(), ("127.0.0.1", udp_in))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_events(d.url, "type:syslog")) < 4:
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=10)[0].decode(errors="replace")
    got = _events(d.url, "type:syslog")
    assert len(got) == 4, (out, got, d.output()[-3000:])
    by = {e["message"].split()[-1] if e.get("program") == "haproxy" else e["message"][:20]: e for e in got}
    proxy = next(e for e in got if e.get("verb") == "GET")
    assert (proxy["level"], proxy["status"], proxy["host"], proxy["component"], proxy["rfc"]) == \
        ("INFO", 200, "st01", "proxy-server", "5424")
    assert proxy["transaction_id"] == "tx7f3e-via5424" and proxy["@timestamp"].startswith("2026-03-02T09:50:11")
    err = next(e for e in got if e.get("http_status_code") == 503)
    assert (err["level"], err["rfc"], err["backend_name"], err["pid"]) == ("ERROR", "3164", "nova_api", 1402)
    assert err["@timestamp"].startswith("2026-03-02T09:14:00") and err["facility_label"] == "local0"
    crit = next(e for e in got if e.get("http_status_code") == 502)
    assert crit["level"] == "CRITICAL"
    assert _events(d.url, "level:CRITICAL AND component:haproxy")[0]["id"] == crit["id"]
    warn = next(e for e in got if "Handoff" in e["message"])
    assert (warn["level"], warn["tags"]) == ("WARNING", [])
    assert by  # every event was keyed
