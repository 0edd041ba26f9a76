"""sd_notify from the real agent process to a real unix datagram socket (NOTIFY_SOCKET).

READY=1 comes once the sources run; WATCHDOG=1 pings stop while the agent
cannot ship and its spool is full (so systemd's watchdog restarts it), and
resume once it can ship again.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
from agent_support import read_jsonl


def messages(sock: socket.socket, seconds: float) -> list[str]:
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return out


def test_ready_and_watchdog_follow_health(daemon_factory, tmp_path: Path) -> None:
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    out = tmp_path / "blocked"
    out.mkdir()  # a folder where the output file should be: every ship fails
    logs = tmp_path / "d0" / "logs"
    logs.mkdir(parents=True)
    with (logs / "app.log").open("w") as f:
        for i in range(3000):
            f.write(f"line {i:05d} " + "w" * 100 + "\n")
    cfg = {"sources": {"files": [{"paths": [str(logs / "*.log")], "multiline": "none"}],
                       "host_metrics": {"enabled": False},
                       "agent": {"output_file": str(out), "batch_records": 20, "publish_timeout": "1s",
                                 "spool": {"max_bytes": 65536}}}}
    agent = daemon_factory("agent", cfg, env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"},
                           sub="d0")
    try:
        agent.start(wait=False)
        sock.settimeout(15)
        assert sock.recv(4096) == b"READY=1"
        # the spool fills within seconds; then the pings must stop
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not messages(sock, 1.0):
                break
        else:
            raise AssertionError("watchdog pings went on although nothing could be shipped")
        assert agent.proc.poll() is None
        out.rmdir()  # the downstream is back
        resumed = messages(sock, 6)
        assert "WATCHDOG=1" in resumed, resumed
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(read_jsonl(out)) < 3000:
            time.sleep(0.3)
        seq = [int(r["lines"][0].split()[1]) for r in read_jsonl(out)]
        assert seq == list(range(3000)), len(seq)
        text = httpx.get(agent.url + "/metrics").text
        for name in ('telemetry_agent_lines_read_total{source="files"} 3000.0', "telemetry_agent_spool_batches 0.0",
                     "telemetry_agent_file_lag_bytes{path=", 'telemetry_agent_batches_shipped_total{via="spool"}',
                     "telemetry_agent_ship_failures_total"):
            assert name in text, name
        agent.stop()
        assert "STOPPING=1" in messages(sock, 2)
    finally:
        agent.kill()
        sock.close()
