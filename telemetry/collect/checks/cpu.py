"""CPU utilisation the way Zabbix's collector computes it: /proc/stat sampled every second.

``system.cpu.util[,user,avg1]`` is the share of one field in the jiffies
spent over the last minute, not since the previous poll: a poller asking every
five minutes still sees the last minute. So the agent keeps up to 15 minutes of
per-second readings (900 small tuples), as ``zabbix_agentd``'s collector does.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from telemetry.component import Component

__all__ = ["CPU_FIELDS", "CpuCollector", "CpuSampler", "read_proc_stat"]

#: /proc/stat's columns after the cpu name, in order, by the names Zabbix's ``type`` parameter uses.
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "interrupt", "softirq", "steal", "guest", "guest_nice")
WINDOWS = {"avg1": 60.0, "avg5": 300.0, "avg15": 900.0}
HISTORY_SECONDS = 900.0


def read_proc_stat(path: str = "/proc/stat") -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """Per-cpu jiffies (``cpu`` is the total, ``cpu0``... each CPU) and the other counters (ctxt, btime)."""
    cpus: dict[str, tuple[int, ...]] = {}
    other: dict[str, int] = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0].startswith("cpu"):
                cpus[parts[0]] = tuple(int(x) for x in parts[1:11])
            elif len(parts) == 2 and parts[1].isdigit():
                other[parts[0]] = int(parts[1])
    return cpus, other


def _busy_and_total(t: tuple[int, ...]) -> tuple[int, ...]:
    # The kernel counts guest time inside user (and guest_nice inside nice); Zabbix takes them out
    # so the fields add up to 100 %.
    vals = list(t) + [0] * (10 - len(t))
    vals[0] -= vals[8]
    vals[1] -= vals[9]
    return tuple(vals)


class CpuCollector:
    """A ring of (monotonic time, per-cpu jiffies); ``sample`` once a second."""

    def __init__(self, path: str = "/proc/stat") -> None:
        self.path = path
        self.history: deque[tuple[float, dict[str, tuple[int, ...]]]] = deque()

    def sample(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        cpus, _ = read_proc_stat(self.path)
        self.history.append((now, cpus))
        while self.history and now - self.history[0][0] > HISTORY_SECONDS + 1:
            self.history.popleft()

    def util(self, cpu: str, field: str, window: str) -> float:
        """Percent of time ``cpu`` (``cpu`` = all, ``cpuN``) spent in ``field`` over ``window``."""
        if field not in CPU_FIELDS:
            raise ValueError(f"Invalid second parameter: {field!r} (one of {', '.join(CPU_FIELDS)})")
        if window not in WINDOWS:
            raise ValueError(f"Invalid third parameter: {window!r} (one of avg1, avg5, avg15)")
        now = time.monotonic()
        cpus, _ = read_proc_stat(self.path)
        if cpu not in cpus:
            raise ValueError(f"Invalid first parameter: no such CPU {cpu[3:] or 'all'}")
        oldest = None
        for t, snap in self.history:  # oldest reading still inside the window
            if now - t <= WINDOWS[window] + 0.5 and cpu in snap:
                oldest = snap[cpu]
                break
        if oldest is None:
            raise ValueError("Collector has not gathered data yet.")
        new, old = _busy_and_total(cpus[cpu]), _busy_and_total(oldest)
        deltas = [max(0, a - b) for a, b in zip(new, old, strict=True)]
        total = sum(deltas[:8])
        if total == 0:
            return 0.0
        return 100.0 * deltas[CPU_FIELDS.index(field)] / total


class CpuSampler(Component):
    """Feeds a CpuCollector once a second while the agent runs."""

    name = "source.cpu_collector"

    def __init__(self, cpu: CpuCollector) -> None:
        super().__init__()
        self.cpu = cpu

    async def start(self) -> None:
        self.cpu.sample()
        self.spawn(self._loop, "sample")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.cpu.sample()

    def details(self) -> dict[str, Any]:
        return {"readings": len(self.cpu.history)}
