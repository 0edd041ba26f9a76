"""Log folders and instance console logs that grow without bound, and the clock's offset.

An unwatched 5 GB ``console.log`` of one instance has filled a disk and taken
the message queue down with it; a node whose clock is a minute or two off
fails Keystone token validation. Both are cheap to watch.
"""

from __future__ import annotations

import glob
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr

from telemetry.collect.checks.health.base import CheckResult, HealthCheck
from telemetry.collect.checks.keys import quote_param

__all__ = ["LogGrowthCheck", "NtpCheck", "sntp_offset"]

Values = list[tuple[str, float, dict[str, Any]]]


def _tree_size(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                continue
    return total


class LogGrowthCheck(HealthCheck):
    """``log.dir.size|growth[<dir>]`` (bytes, bytes/s) and the biggest console logs."""

    check: Literal["log_growth"]
    dirs: list[str] = Field(default_factory=lambda: ["/var/log/nova", "/var/log/neutron", "/var/log/rabbitmq"])
    console_logs: str = Field("/var/lib/nova/instances/*/console.log", description="Glob of instance console logs")
    console_max_bytes: int = Field(1 << 30, ge=1, description="A console log over this size is a problem")
    _last: dict[str, tuple[float, int]] = PrivateAttr(default_factory=dict)

    def run(self, timeout: float) -> CheckResult:
        values: Values = []
        now = time.monotonic()
        for d in self.dirs:
            if not os.path.isdir(d):
                continue
            size = _tree_size(d)
            meta = {"dir": d}
            values.append((f"log.dir.size[{quote_param(d)}]", float(size), meta))
            last = self._last.get(d)
            if last is not None and now > last[0]:
                values.append((f"log.dir.growth[{quote_param(d)}]", round((size - last[1]) / (now - last[0]), 3), meta))
            self._last[d] = (now, size)
        consoles = []
        for p in glob.glob(self.console_logs):
            try:
                consoles.append((os.stat(p).st_size, p))
            except OSError:
                continue
        problems = []
        if consoles:
            consoles.sort(reverse=True)
            over = [(s, p) for s, p in consoles if s > self.console_max_bytes]
            values += [("nova.console_log.max_size", float(consoles[0][0]), {"file": consoles[0][1]}),
                       ("nova.console_log.over_limit", float(len(over)), {"limit": self.console_max_bytes})]
            for s, p in over[:20]:
                instance = Path(p).parent.name
                values.append((f"nova.console_log.size[{instance}]", float(s), {"instance": instance, "file": p}))
            if over:
                problems.append(f"{len(over)} console log(s) over {self.console_max_bytes} bytes")
        if not values:
            return CheckResult.skipped(f"none of {', '.join(self.dirs)} exists and no console logs")
        return CheckResult.failed("; ".join(problems), values) if problems else CheckResult.ok(values)


_NTP_EPOCH = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)


def sntp_offset(server: str, port: int = 123, timeout: float = 2.0) -> float:
    """The local clock's offset from ``server`` in seconds (RFC 4330 client; positive: we are behind)."""
    packet = bytearray(48)
    packet[0] = (4 << 3) | 3  # version 4, client mode
    t1 = time.time()
    sec = int(t1) + _NTP_EPOCH
    packet[40:48] = struct.pack("!II", sec, int((t1 % 1) * 2**32))
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(bytes(packet), (server, port))
        data, _ = s.recvfrom(512)
    t4 = time.time()
    if len(data) < 48:
        raise ValueError(f"short NTP reply ({len(data)} bytes)")
    if data[0] & 0x07 not in (4, 5) or data[1] == 0:
        raise ValueError("not a server reply, or kiss-of-death (stratum 0)")

    def ts(off: int) -> float:
        s_, f_ = struct.unpack("!II", data[off:off + 8])
        return s_ - _NTP_EPOCH + f_ / 2**32

    t2, t3 = ts(32), ts(40)
    return ((t2 - t1) + (t3 - t4)) / 2


_CONF = ("/etc/chrony/chrony.conf", "/etc/chrony.conf", "/etc/ntp.conf", "/etc/ntpsec/ntp.conf",
         "/etc/systemd/timesyncd.conf")


def configured_servers() -> list[str]:
    """NTP servers the node's own time daemon is set up with."""
    out: list[str] = []
    for path in _CONF:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 2 and parts[0] in ("server", "pool", "peer"):
                out.append(parts[1])
            elif parts and parts[0].startswith("NTP=") and not line.lstrip().startswith("#"):
                out += parts[0][4:].split() + parts[1:]
    return list(dict.fromkeys(out))


class NtpCheck(HealthCheck):
    """``ntp.offset`` in seconds against each server; past ``max_offset`` it fails."""

    check: Literal["ntp"]
    servers: list[str] = Field(default_factory=list, description="host or host:port; default: the node's own")
    max_offset: float = Field(1.0, gt=0, description="Seconds of offset that count as a problem")

    def run(self, timeout: float) -> CheckResult:
        servers = self.servers or configured_servers()
        if not servers:
            return CheckResult.skipped("no NTP server configured (chrony, ntpd, timesyncd)")
        values: Values = []
        problems = []
        for server in servers:
            host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            try:
                off = sntp_offset(host or server, int(port or 123), timeout=min(timeout, 3.0))
            except (OSError, ValueError) as exc:
                problems.append(f"{server}: {exc}")
                continue
            values.append((f"ntp.offset[{quote_param(server)}]", round(off, 6), {"server": server}))
            if abs(off) > self.max_offset:
                problems.append(f"clock off by {off:+.3f}s against {server}")
        if values:
            best = min((v[1] for v in values), key=abs)
            values.append(("ntp.offset", best, {}))
        return CheckResult.failed("; ".join(problems), values) if problems else CheckResult.ok(values)
