"""Agent throughput: tail + multi-line + batch into the memory bus, against rsyslog's imfile.

Both read the same generated oslo.log file (INFO lines with Kilo-style TRACE
tracebacks) in the same run. We report lines per second (wall clock, from
start until every line is acknowledged) and CPU seconds per million lines
(user + system of the whole process), and the ratio ours / rsyslog's.
rsyslog reads with imfile (inotify) and writes each message to a file with
omfile, the cheapest real output it has.

    .venv/bin/python benchmarks/agent.py [--lines 500000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from telemetry.bus import MemoryBus
from telemetry.wiring import agent_components
from telemetry.config import Settings
from telemetry.runtime import Runtime
from telemetry.gctune import tune_for_daemon


def make_log(path: Path, lines: int) -> int:
    rng = random.Random(7)
    n = 0
    with path.open("w") as f:
        while n < lines:
            ts = f"2026-03-02 09:{(n // 60000) % 60:02d}:{(n // 1000) % 60:02d}.{n % 1000:03d}"
            f.write(f"{ts} 31842 INFO nova.compute.manager [req-{n:08x} admin demo] [instance: "
                    f"{rng.getrandbits(64):016x}] Took {rng.random() * 10:.2f} seconds to spawn the instance\n")
            n += 1
            if rng.random() < 0.02 and n + 4 < lines:
                f.write(f"{ts} 31842 ERROR nova.compute.manager [req-{n:08x}] Instance failed to spawn\n")
                for k in range(3):
                    f.write(f"{ts} 31842 TRACE nova.compute.manager   File \"/usr/lib/python3/nova/x.py\", "
                            f"line {k}, in spawn\n")
                n += 4
    return n


async def run_ours(tmp: Path, log: Path, lines: int) -> tuple[float, float]:
    s = Settings.model_validate({
        "data_dir": str(tmp / "ours"), "host": "bench",
        "sources": {"files": [{"paths": [str(log)], "fields": {"type": "openstack", "component": "nova"},
                               "multiline": "python"}],
                    "host_metrics": {"enabled": False},
                    "agent": {"multiline_flush": 0.1, "batch_records": 1000}},
    })
    bus = MemoryBus()
    rt = Runtime(settings=s, mode="agent", bus=bus, data_dir=s.data_dir)
    consumer = await bus.subscribe(["raw_logs"], "bench")
    size = log.stat().st_size
    proc = psutil.Process()
    cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
    comps = agent_components(rt)
    for c in comps:
        await c.start()
    tune_for_daemon()  # as `telemetry agent` does once started
    pipeline = rt.agent
    while True:
        ds = await consumer.fetch(5000, timeout=0.05)
        await consumer.ack(ds)
        cps = list(pipeline.checkpoints.items.values())
        if cps and cps[0].offset >= size:
            break
    wall, cpu = time.monotonic() - t0, sum(proc.cpu_times()[:2]) - cpu0
    for c in reversed(comps):
        await c.stop()
    return wall, cpu


def run_rsyslog(tmp: Path, log: Path, lines: int) -> tuple[float, float]:
    work = tmp / "rsyslog"
    work.mkdir()
    out = work / "out.log"
    conf = work / "rsyslog.conf"
    conf.write_text(f"""
global(workDirectory="{work}")
module(load="imfile")
template(name="msgonly" type="string" string="%msg%\\n")
input(type="imfile" File="{log}" Tag="nova" readMode="0" freshStartTail="off" ruleset="out")
ruleset(name="out") {{ action(type="omfile" file="{out}" template="msgonly" asyncWriting="off") }}
""")
    t0 = time.monotonic()
    p = subprocess.Popen(["rsyslogd", "-n", "-f", str(conf), "-i", str(work / "pid")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ps = psutil.Process(p.pid)
    cpu = 0.0
    try:
        while True:
            cpu = sum(ps.cpu_times()[:2])
            if out.exists() and out.stat().st_size >= log.stat().st_size - lines * 2:
                with out.open("rb") as f:
                    if sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) >= lines:
                        break
            if p.poll() is not None:
                raise SystemExit(f"rsyslogd exited with {p.returncode}")
            time.sleep(0.05)
        wall = time.monotonic() - t0
    finally:
        p.terminate()
        p.wait(10)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=500_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        log = tmp / "nova-compute.log"
        n = make_log(log, a.lines)
        mb = log.stat().st_size / 1e6
        print(f"{n} lines, {mb:.1f} MB, {os.cpu_count()} CPUs")
        ours = asyncio.run(run_ours(tmp, log, n))
        theirs = run_rsyslog(tmp, log, n)
    rows = [("telemetry agent (tail+multiline+batch -> memory bus)", *ours), ("rsyslog imfile -> omfile", *theirs)]
    print(f"{'reader':55} {'lines/s':>12} {'CPU s / M lines':>16}")
    for name, wall, cpu in rows:
        print(f"{name:55} {n / wall:12,.0f} {cpu / n * 1e6:16.2f}")
    print(f"ratio ours/rsyslog: throughput {(n / ours[0]) / (n / theirs[0]):.2f}x, "
          f"CPU per line {ours[1] / theirs[1]:.2f}x (lower is better)")


if __name__ == "__main__":
    main()
