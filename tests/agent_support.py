"""Helpers for the agent tests: an in-process agent over a real bus object, and readers of its output."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson

from telemetry.bus import BusError, MemoryBus, Receipt
from telemetry.bus.records import decode_delivery
from telemetry.wiring import agent_components
from telemetry.collect.files import FilesSource
from telemetry.config import Settings
from telemetry.runtime import Runtime
from telemetry.models import RawLog


class FlakyBus(MemoryBus):
    """A memory bus that refuses every publish while ``down`` (a broker outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refused = 0

    async def publish(self, topic, messages):  # type: ignore[no-untyped-def]
        if self.down == "hang":  # a broker that accepts the connection and never confirms
            self.refused += 1
            await asyncio.sleep(3600)
        if self.down:
            self.refused += 1
            raise BusError("broker unreachable (test outage)")
        return await super().publish(topic, messages)

    #: How long an unconfirmed batch takes to fail, the n-th one ``unconfirmed_after + n * unconfirmed_step``.
    unconfirmed_after, unconfirmed_step = 0.2, 0.0

    async def enqueue(self, topic, messages):  # type: ignore[no-untyped-def]
        if self.down == "unconfirmed":  # Kafka's way: the client queues the batch, the acks never come
            self.refused += 1
            return Receipt.after(self._never_confirmed(self.unconfirmed_after + self.refused * self.unconfirmed_step))
        return await super().enqueue(topic, messages)

    @staticmethod
    async def _never_confirmed(after: float) -> Receipt:
        await asyncio.sleep(after)
        raise BusError("the broker never confirmed the batch (test outage)")


def settings(tmp: Path, files: list[dict] | None = None, **agent: Any) -> Settings:
    return Settings.model_validate({
        "data_dir": str(tmp / "data"),
        "host": "node1",
        "sources": {
            "files": files if files is not None else [
                {"paths": [str(tmp / "logs" / "*.log*")], "fields": {"type": "openstack", "component": "nova"},
                 "multiline": "none"}],
            "host_metrics": {"enabled": False},
            # The agent's Zabbix listeners on ports of the kernel's choosing: other tests run beside these.
            "zabbix": {"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0"},
            "agent": {"batch_wait": 0.05, "poll_interval": 0.02, "scan_interval": 0.05,
                      "release_after": 0.2, "multiline_flush": 0.3, **agent},
        },
    })


class InProcessAgent:
    """The agent's components started in this event loop against ``bus``."""

    def __init__(self, s: Settings, bus: MemoryBus) -> None:
        self.rt = Runtime(settings=s, mode="agent", bus=bus, data_dir=s.data_dir)
        self.comps = agent_components(self.rt)
        self.bus = bus
        self.consumer = None
        self.got: list[RawLog] = []

    @property
    def files(self) -> FilesSource:
        """The file source among the agent's components."""
        return next(c for c in self.comps if isinstance(c, FilesSource))

    async def __aenter__(self) -> InProcessAgent:
        self.consumer = await self.bus.subscribe(["raw_logs"], "test")
        for c in self.comps:
            await c.start()
            c.mark("running")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for c in reversed(self.comps):
            await c.stop()

    async def collect(self, until, timeout: float = 10.0) -> list[RawLog]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ds = await self.consumer.fetch(1000, timeout=0.05)
            self.got += [decode_delivery(RawLog, d) for d in ds]
            await self.consumer.ack(ds)
            if until(self.got):
                return self.got
        raise AssertionError(f"condition not met in {timeout}s; got {len(self.got)} records")


def texts(records: list[RawLog]) -> list[str]:
    return ["\n".join(r.lines) for r in records]


def read_jsonl(path: Path) -> list[dict]:
    """Records an agent wrote to its output file; a line cut by kill -9 is not a record."""
    out = []
    if not path.exists():
        return out
    for line in path.read_bytes().splitlines():
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pass
    return out


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


JOURNAL_REMOTE = next((p for p in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
                       if Path(p).exists()), None)


def journal_export(fields: dict[str, str]) -> bytes:
    """One entry in systemd's journal export format (a field with a newline in the binary form)."""
    out = b""
    for key, value in fields.items():
        data = value.encode()
        if b"\n" in data:
            out += key.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return out + b"\n"


def journal_append(folder: Path, entries: list[dict[str, str]], boot: str = "0123456789abcdef0123456789abcdef") -> None:
    """Append entries to ``folder/test.journal``, a real journal file written by systemd-journal-remote.

    Each entry gets the fields journald itself adds (boot id, both timestamps) unless given."""
    import subprocess

    assert JOURNAL_REMOTE, "systemd-journal-remote is not installed (scripts/setup.sh test installs it)"
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time_ns() // 1000
    data = b"".join(journal_export({"__REALTIME_TIMESTAMP": str(now + i), "__MONOTONIC_TIMESTAMP": str(now + i),
                                    "_BOOT_ID": boot, **e}) for i, e in enumerate(entries))
    subprocess.run([JOURNAL_REMOTE, f"--output={folder / 'test.journal'}", "-"], input=data, check=True,
                   capture_output=True, timeout=60)
