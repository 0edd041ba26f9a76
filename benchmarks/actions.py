"""Latency from an alarm transition published on the bus to the webhook request arriving.

Runs the real dispatcher (bus stage, SQLite outbox with synchronous=FULL,
delivery worker, httpx) against a loopback receiver, one transition at a time,
and reports p50 and p99. The peer, measured in the same run, is what Aodh's
REST notifier does: one direct httpx POST with no outbox. The ratio is the
price of never losing a notification.

The rule engine's own breaching-sample -> transition latency is measured by
benchmarks/alarms.py (rules stage); add the two for sample -> webhook.

    .venv/bin/python benchmarks/actions.py [-n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from actions_support import Harness, Receiver, transition


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def ours(n: int) -> list[float]:
    rx = await Receiver().start()
    with tempfile.TemporaryDirectory() as tmp:
        h = await Harness(Path(tmp)).start()
        out = []
        try:
            for i in range(n):
                t0 = time.time()
                await h.publish(transition(alarm_id=f"bench-{i}", actions=[rx.url + "/hook"],
                                           timestamp=time.time()))
                reqs = await rx.wait(i + 1)
                out.append(reqs[i]["at"] - t0)
        finally:
            await h.stop()
            await rx.stop()
    return out


async def direct(n: int) -> list[float]:
    rx = await Receiver().start()
    out = []
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(n):
            t0 = time.time()
            await client.post(rx.url + "/hook", json={"alarm_id": f"bench-{i}"})
            out.append(rx.requests[i]["at"] - t0)
    await rx.stop()
    return out


async def main(n: int) -> None:
    await direct(20)  # warm up imports and the loopback stack
    mine = await ours(n)
    peer = await direct(n)
    print(f"actions: transition published on the bus -> webhook request arrived, n={n}")
    print(f"{'':32} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, v in (("telemetry (bus+outbox+worker)", mine), ("direct httpx POST (Aodh-like)", peer)):
        print(f"{name:32} {pct(v, 50) * 1e3:8.2f} {pct(v, 99) * 1e3:8.2f} {statistics.mean(v) * 1e3:8.2f}")
    print(f"ratio telemetry/direct: p50 {pct(mine, 50) / pct(peer, 50):.1f}x, p99 {pct(mine, 99) / pct(peer, 99):.1f}x")
    print("note: the rule engine's breaching sample -> transition latency is measured separately by the rules "
          "benchmark; Aodh itself adds up to its 60 s evaluation interval before its POST.")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("-n", type=int, default=300, help="transitions to time")
    asyncio.run(main(ap.parse_args().n))
