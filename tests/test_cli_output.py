"""Query commands' output: OpenStack-style formats and columns, tables that fit a terminal and never wrap in a pipe."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import yaml

from support import wait_until

LONG = "x" * 120


def cli(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "telemetry", *args, "--url", url], capture_output=True, text=True,
                       timeout=60)
    assert not check or r.returncode == 0, r.stderr
    return r


def on_terminal(url: str, *args: str, columns: int = 80) -> str:
    """The command's output on a pseudo-terminal ``columns`` wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    p = subprocess.Popen([sys.executable, "-m", "telemetry", *args, "--url", url], stdout=slave, stderr=slave,
                         env={**env, "TERM": "xterm"}, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    p.wait(30)
    os.close(master)
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode()).replace("\r", "")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    from conftest import DaemonProcess

    d = DaemonProcess(tmp_path_factory.mktemp("cli"), "run",
                      {"sources": {"files": [], "ceilometer": {"enabled": False}, "host_metrics": {"interval": "1s"}}})
    d.start()
    now = datetime.now(timezone.utc)
    events = [{"@timestamp": (now - timedelta(seconds=i)).isoformat(), "host": "cn01", "component": "nova",
               "type": "openstack", "level": "ERROR", "request_id": "req-cli-1",
               "message": f"first line {i} {LONG}\nTraceback (most recent call last):\n  second line"} for i in range(3)]
    old = {"@timestamp": (now - timedelta(days=30)).isoformat(), "host": "cn09", "component": "glance",
           "type": "openstack", "level": "INFO", "message": "from last month"}
    assert httpx.post(d.url + "/v1/events", json=[*events, old], timeout=10).status_code == 202
    for i in range(3):
        body = {"name": f"alarm-{i}-{uuid.uuid4()}", "type": "threshold",
                "threshold_rule": {"meter_name": "hardware.cpu.util", "threshold": 99, "comparison_operator": "gt"}}
        assert httpx.post(d.url + "/v2/alarms", json=body, timeout=10).status_code == 201
    wait_until(lambda: len(httpx.get(d.url + "/v1/events", params={"q": "request_id:req-cli-1"}, timeout=5).json()) == 3,
               what="events stored")
    wait_until(lambda: len({m["name"] for m in httpx.get(d.url + "/v2/meters", timeout=5).json()}) >= 8,
               what="host figures")
    yield d
    d.stop()


def test_a_piped_table_never_wraps(daemon) -> None:
    meters = httpx.get(daemon.url + "/v2/meters", timeout=5).json()
    lines = cli(daemon.url, "meter-list").stdout.splitlines()
    for m in meters:
        assert any(m["name"] in line and m["resource_id"] in line for line in lines), m["name"]
    search = cli(daemon.url, "search", "request_id:req-cli-1").stdout
    assert search.count(LONG) == 3 and "second line" not in search  # whole first lines, nothing else


def test_formats_and_columns(daemon) -> None:
    names = cli(daemon.url, "meter-list", "-f", "value", "-c", "Name").stdout.split()
    assert "hardware.cpu.util" in names and all(" " not in n for n in names)
    rows = list(csv.reader(io.StringIO(cli(daemon.url, "alarm-list", "-f", "csv", "-c", "Name", "-c", "State").stdout)))
    assert rows[0] == ["Name", "State"] and len(rows) >= 4
    assert isinstance(yaml.safe_load(cli(daemon.url, "alarm-list", "-f", "yaml").stdout), list)
    whole = [json.loads(line) for line in cli(daemon.url, "search", "request_id:req-cli-1", "-f", "json").stdout.splitlines()]
    assert len(whole) == 3 and all("second line" in e["message"] for e in whole)
    bad = cli(daemon.url, "alarm-list", "-c", "Bogus", check=False)
    assert bad.returncode == 2 and "Alarm ID" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("args", [("meter-list",), ("statistics", "-m", "hardware.cpu.util", "--period", "60"),
                                  ("alarm-list",), ("search", "request_id:req-cli-1")])
def test_tables_fit_80_columns_and_keep_ids_whole(daemon, args: tuple[str, ...]) -> None:
    out = on_terminal(daemon.url, *args)
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and max(len(line) for line in lines) <= 80, out
    if args[0] == "alarm-list":
        alarm_id = httpx.get(daemon.url + "/v2/alarms", timeout=5).json()[0]["alarm_id"]
        assert any(alarm_id in line for line in lines), out
        assert len(lines) < 8 + 6 * 3, out  # a row is a few lines at most, not one per chunk of id
    if args[0] == "search":
        assert sum("first line" in line for line in lines) == 3 and "second line" not in out


def test_flags_mean_one_thing_and_since_takes_what_people_type(daemon) -> None:
    run_help = subprocess.run([sys.executable, "-m", "telemetry", "run", "--help"], capture_output=True, text=True).stdout
    assert "--quiet" in run_help and "-q," not in run_help
    for cmd in ("search", "sample-list", "action-log"):
        text = subprocess.run([sys.executable, "-m", "telemetry", cmd, "--help"], capture_output=True, text=True).stdout
        assert "-l, --limit" in text, cmd
    for since in ("15m", "2h", "yesterday", "today", (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()):
        assert "first line 0" in cli(daemon.url, "search", "request_id:req-cli-1", "--since", since).stdout, since
    bad = cli(daemon.url, "search", "x", "--since", "last tuesday", check=False)
    assert bad.returncode == 2 and "--since 'last tuesday'" in bad.stderr and "Traceback" not in bad.stderr


def test_nothing_found_says_so_and_why_when_old_lines_were_dropped(daemon) -> None:
    r = cli(daemon.url, "search", "from last month")
    assert r.stdout == "" and "0 events" in r.stderr
    assert "older than the retention" in r.stderr and "glance on cn09" in r.stderr
    health = httpx.get(daemon.url + "/healthz", timeout=5).json()["components"]["stage.events"]
    assert health["expired_on_arrival"] == 1 and health["expired_on_arrival_by_source"] == {"glance on cn09": 1}
    time.sleep(0.2)
    assert daemon.output().count("older than the retention") == 1
