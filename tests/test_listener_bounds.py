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
