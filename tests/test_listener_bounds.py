"""Probes as an attacker would send them to a daemon left at 1,024 descriptors (issue 20).

1,100 idle syslog TCP connections used to take every descriptor: the API
stopped answering and the log grew 106 MB in 13 s. The syslog listener now
caps its connections and closes silent ones; a datagram nested 5,000 deep is
refused as too complex. The daemon must keep answering within 1 s, with its
memory within 100 MB of where it started.
"""

from __future__ import annotations

import functools
import resource
import socket
import subprocess
import time

import httpx
import msgpack
import psutil
import pytest

from telemetry.config.base import split_hostport

CONNECTIONS = 1_100


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


@pytest.fixture
def low_limit_popen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Daemons of this test start with soft and hard limits of 1,024 (a host's default), whatever runs the tests."""
    monkeypatch.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, preexec_fn=_low_fd_limit))


def _answers_fast(url: str) -> float:
    t0 = time.monotonic()
    r = httpx.get(url + "/healthz", timeout=5)
    assert r.status_code in (200, 503)
    return time.monotonic() - t0


def test_idle_connections_and_nested_datagrams_leave_the_daemon_answering(daemon_factory, low_limit_popen) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < CONNECTIONS + 200:
        pytest.skip(f"this test process may open only {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, CONNECTIONS + 200), hard))
    d = daemon_factory(config={"sources": {
        "files": [], "syslog": {"listen": "127.0.0.1:0", "idle_timeout": "3s"},
        "ceilometer": {"enabled": True, "udp": "127.0.0.1:0", "http": False},
        "zabbix": {"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0"}}}).start()
    assert d.proc is not None
    proc = psutil.Process(d.proc.pid)
    assert proc.rlimit(psutil.RLIMIT_NOFILE)[1] == 1024
    start_rss = proc.memory_info().rss
    log_before = len(d.output())
    host, port = split_hostport(d.listen("source.syslog"))
    socks = []
    try:
        for _ in range(CONNECTIONS):
            try:
                socks.append(socket.create_connection((host, port), timeout=5))
            except OSError:
                break  # refused outright is fine too
        time.sleep(0.5)
        assert _answers_fast(d.url) < 1.0
        health = httpx.get(d.url + "/healthz", timeout=5).json()
        assert health["components"]["source.syslog"]["open_connections"] <= 256
        # Nested datagrams (msgpack 5,000 deep) next to the held connections.
        uhost, uport = split_hostport(d.listen("source.ceilometer_udp").removesuffix("/udp"))
        # Written by hand (0x91: a one-item array, 5,000 times): msgpack's own packer will not nest this deep.
        datagram = (b"\x82" + msgpack.packb("counter_name") + msgpack.packb("x") + msgpack.packb("resource_metadata")
                    + b"\x91" * 5000 + b"\x01")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            for _ in range(200):
                u.sendto(datagram, (uhost, uport))
        time.sleep(0.5)
        assert _answers_fast(d.url) < 1.0
        # The held connections are closed once silent for idle_timeout: a sender that reconnects gets through.
        time.sleep(4)
        health = httpx.get(d.url + "/healthz", timeout=5).json()
        assert health["components"]["source.syslog"]["open_connections"] == 0
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"<13>Dec  4 10:00:00 cn01 nova-compute[1]: after the flood\n")
    finally:
        for s in socks:
            s.close()
    assert _answers_fast(d.url) < 1.0
    assert proc.memory_info().rss - start_rss < 100 << 20
    metrics = httpx.get(d.url + "/metrics", timeout=5).text
    assert 'telemetry_agent_syslog_connections_total{result="over_cap"}' in metrics
    assert 'telemetry_agent_syslog_connections_total{result="idle_timeout"}' in metrics
    assert len(d.output()) - log_before < 1 << 20, "the log grew by a megabyte or more"


def test_peer_rate_limit_holds_each_sender_to_its_rate() -> None:
    from telemetry.bounds import PeerRateLimit

    limit = PeerRateLimit(rate=10, burst=20, max_peers=3)
    assert sum(limit.allow("a", 0.0) for _ in range(100)) == 20  # the burst, then nothing
    assert limit.allow("b", 0.0)  # another sender is not held back by a
    assert sum(limit.allow("a", 1.0) for _ in range(100)) == 10  # one second refills ten
    for peer in ("c", "d", "e"):
        limit.allow(peer, 1.0)
    assert len(limit._buckets) == 3  # the oldest senders were forgotten


async def test_syslog_senders_over_their_rate_are_dropped_and_counted(tmp_path) -> None:
    import asyncio

    from agent_support import InProcessAgent
    from telemetry.bus import MemoryBus
    from telemetry.collect.syslog import REJECTED
    from test_agent_syslog import syslog_settings

    s = syslog_settings(tmp_path)
    s = s.model_copy(update={"sources": s.sources.model_copy(update={"syslog": s.sources.syslog.model_copy(
        update={"rate_per_peer": 5.0})})})
    before = REJECTED.labels(reason="rate_limited")._value.get()
    async with InProcessAgent(s, MemoryBus()) as agent:
        srv = next(c for c in agent.comps if c.name == "source.syslog")
        host, port = srv.address.rsplit(":", 1)
        t0 = time.monotonic()
        r, w = await asyncio.open_connection(host, int(port))
        w.write(b"".join(b"<14>Mar  2 09:00:02 node1 nova: flood %d\n" % i for i in range(500)))
        await w.drain()

        def dropped() -> float:
            return REJECTED.labels(reason="rate_limited")._value.get() - before
        got = await agent.collect(lambda got: len(got) + dropped() >= 500)
        elapsed = time.monotonic() - t0
        w.close()
    # The burst (ten times the rate) and what refilled meanwhile; the rest dropped and counted.
    assert 50 <= len(got) <= 50 + 5 * elapsed + 1, (len(got), elapsed)
    assert len(got) + dropped() == 500


def test_idle_api_connections_are_capped_and_closed_after_the_header_timeout(daemon_factory, low_limit_popen) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < CONNECTIONS + 200:
        pytest.skip(f"this test process may open only {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, CONNECTIONS + 200), hard))
    d = daemon_factory(config={"api": {"max_connections": 500, "header_timeout": "2s"},
                               "sources": {"files": [], "zabbix": {"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0"}}})
    d.start()
    host, port = split_hostport(d.url.split("//")[1])
    socks = []
    try:
        for _ in range(CONNECTIONS):
            try:
                s = socket.create_connection((host, port), timeout=5)
                s.sendall(b"GET /healthz HTTP/1.1\r\n")  # a request head that never ends
                socks.append(s)
            except OSError:
                break
        time.sleep(3.5)  # past header_timeout: every held connection was closed
        assert _answers_fast(d.url) < 1.0
    finally:
        for s in socks:
            s.close()
    metrics = httpx.get(d.url + "/metrics", timeout=5).text
    assert 'telemetry_api_requests_refused_total{reason="over_cap"}' in metrics
    assert 'telemetry_api_requests_refused_total{reason="header_timeout"}' in metrics
