"""A real ``zabbix_agentd`` (Debian's zabbix-agent) started with its own config on a free port."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from telemetry.bus.memory import MemoryBus
from telemetry.models import Sample, decode

AGENTD = shutil.which("zabbix_agentd") or "/usr/sbin/zabbix_agentd"


def agent_port() -> int:
    """A free port zabbix_agentd accepts (its ListenPort must lie in 1024-32767, below the ephemeral range)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 20000-32000")


class Agentd:
    def __init__(self, folder: Path, hostname: str = "zbx-test", server_active: str = "",
                 host_metadata: str = "", extra: list[str] | None = None) -> None:
        if not Path(AGENTD).exists():
            pytest.fail("zabbix_agentd is missing: scripts/setup.sh test installs the zabbix-agent package")
        self.port = agent_port()
        self.address = f"127.0.0.1:{self.port}"
        self.folder = folder
        lines = [f"PidFile={folder}/agentd.pid", f"LogFile={folder}/agentd.log", "LogType=file", "DebugLevel=3",
                 "ListenIP=127.0.0.1", f"ListenPort={self.port}", "Server=127.0.0.1", "StartAgents=2",
                 f"Hostname={hostname}", "AllowRoot=1", "User=root", "Timeout=5"]
        if server_active:
            lines += [f"ServerActive={server_active}", "RefreshActiveChecks=60", "BufferSend=1"]
            if host_metadata:
                lines.append(f"HostMetadata={host_metadata}")
        lines += extra or []  # e.g. TLSConnect=cert, TLSAccept=cert and the TLS*File settings
        self.conf = folder / "agentd.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Agentd:
        self.proc = subprocess.Popen([AGENTD, "-f", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"zabbix_agentd exited: {self.log()}") from None
                time.sleep(0.1)
        raise AssertionError(f"zabbix_agentd did not listen on {self.address}: {self.log()}")

    def log(self) -> str:
        p = self.folder / "agentd.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def drain_samples(bus: MemoryBus, group: str, want: int, timeout: float = 10.0) -> list[Sample]:
    """Samples from ``bus`` (subscribed before publishing) until ``want`` arrived or the time is up."""
    consumer = await bus.subscribe(["samples"], group)
    out: list[Sample] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < want and time.monotonic() < deadline:
            batch = await consumer.fetch(500, timeout=0.2)
            out += [decode(Sample, d.value) for d in batch]
            await consumer.ack(batch)
            if not batch:
                await asyncio.sleep(0.05)
    finally:
        await consumer.close()
    return out
