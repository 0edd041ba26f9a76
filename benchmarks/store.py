"""Sample store benchmark: our embedded store (and PostgreSQL) against InfluxDB 1.6 and VictoriaMetrics.

One day of ``cpu_util``: 1,000 resources, 10 projects, 100 hosts, each
resource reporting every 86400 / (N / 1000) seconds (8.64 s at the full
N = 10,000,000). Printed side by side: ingest samples/s, bytes per sample on
disk, and the median latency of three queries:
  A  one resource over the day in 60 s buckets (avg, min, max, count)
  B  all resources over the day in 60 s buckets
  C  the average per resource over the last hour

Usage:  scripts/bench-setup.sh && .venv/bin/python benchmarks/store.py --samples 1000000 [--pg URL]
Peers run on loopback with their data in a scratch folder; everything is removed afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from collections.abc import Callable

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from telemetry.meter.query import QueryTerm, SampleQuery
from telemetry.gctune import tune_for_daemon
from telemetry.meter.store import open_store
from telemetry.models import Sample

RESOURCES, PROJECTS, HOSTS = 1000, 10, 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def median_ms(fn: Callable[[], Any], runs: int = 5) -> float:
    fn()  # warm
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def dataset(n: int, day: datetime) -> tuple[list[tuple[int, int, float]], float]:
    """(resource, ts_ms, value) in time order, and the step in seconds."""
    per = max(1, n // RESOURCES)
    step = 86400 / per
    base = int(day.timestamp() * 1000)
    rows = [(r, base + int(i * step * 1000), float((i * 7 + r * 13) % 1000) / 10.0)
            for i in range(per) for r in range(RESOURCES)]
    return rows, step


def ours(url: str, rows: list[tuple[int, int, float]], day: datetime, folder: Path) -> dict[str, Any]:
    store = open_store(url, folder)
    batch = 20000
    samples_built = 0
    t_ingest = 0.0
    for i in range(0, len(rows), batch):
        samples = [Sample(counter_name="cpu_util", counter_type="gauge", counter_unit="%", counter_volume=v,
                          resource_id=f"res-{r}", project_id=f"proj-{r % PROJECTS}", user_id="bench",
                          timestamp=datetime.fromtimestamp(ts / 1000, timezone.utc),
                          resource_metadata={"host": f"host-{r % HOSTS}"})
                   for r, ts, v in rows[i:i + batch]]
        samples_built += len(samples)
        t = time.perf_counter()
        store.write(samples, now=day + timedelta(days=1))
        t_ingest += time.perf_counter() - t
    t = time.perf_counter()
    store.maintain(day + timedelta(days=1, hours=1))  # seal the last open hour: ingest includes the packing
    t_ingest += time.perf_counter() - t
    size = store.data_size()
    start, end = day, day + timedelta(days=1)

    def rng(*extra: tuple[str, str, Any], lo: datetime = start) -> SampleQuery:
        terms = [QueryTerm(field="timestamp", op="ge", value=lo), QueryTerm(field="timestamp", op="lt", value=end)]
        return SampleQuery(terms + [QueryTerm(field=f, op=o, value=v) for f, o, v in extra], meter="cpu_util")

    aggs = ["avg", "min", "max", "count"]
    res = {
        "ingest": len(rows) / t_ingest,
        "bytes": size / len(rows),
        "A": median_ms(lambda: store.statistics_sync(rng(("resource_id", "eq", "res-7")), 60, [], aggs)),
        "B": median_ms(lambda: store.statistics_sync(rng(), 60, [], aggs), runs=3),
        "C": median_ms(lambda: store.statistics_sync(rng(lo=end - timedelta(hours=1)), None, ["resource_id"],
                                                     ["avg"])),
    }
    if len(rows) <= 2_000_000:  # raw samples are decoded in Python: seconds per million
        res["B_raw"] = median_ms(lambda: store.statistics_sync(rng(), 60, [], aggs, force="raw"), runs=1)
    store.close()
    return res


def line_protocol(rows: list[tuple[int, int, float]]) -> list[bytes]:
    chunks, buf = [], []
    for r, ts, v in rows:
        buf.append(f"cpu_util,resource_id=res-{r},project_id=proj-{r % PROJECTS},host=host-{r % HOSTS} "
                   f"value={v} {ts}")
        if len(buf) == 20000:
            chunks.append("\n".join(buf).encode())
            buf = []
    if buf:
        chunks.append("\n".join(buf).encode())
    return chunks


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def influx(rows, day: datetime, scratch: Path) -> dict[str, Any]:
    port = free_port()
    data = scratch / "influx"
    cfg = scratch / "influxdb.conf"
    cfg.write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{data}/meta"
[data]
  dir = "{data}/data"
  wal-dir = "{data}/wal"
  index-version = "tsi1"
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[monitor]
  store-enabled = false
""")
    proc = subprocess.Popen(["influxd", "-config", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/ping")
        c = httpx.Client(base_url=base, timeout=600)
        c.post("/query", params={"q": "CREATE DATABASE bench"}).raise_for_status()
        chunks = line_protocol(rows)
        t = time.perf_counter()
        for ch in chunks:
            c.post("/write", params={"db": "bench", "precision": "ms"}, content=ch).raise_for_status()
        ingest = len(rows) / (time.perf_counter() - t)
        s, e = day.strftime("%Y-%m-%dT%H:%M:%SZ"), (day + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        h = (day + timedelta(hours=23)).strftime("%Y-%m-%dT%H:%M:%SZ")

        def q(text: str) -> Callable[[], Any]:
            return lambda: c.get("/query", params={"db": "bench", "q": text}).raise_for_status()

        sel = "SELECT mean(value), min(value), max(value), count(value) FROM cpu_util"
        res = {
            "ingest": ingest,
            "A": median_ms(q(f"{sel} WHERE resource_id='res-7' AND time >= '{s}' AND time < '{e}' GROUP BY time(60s)")),
            "B": median_ms(q(f"{sel} WHERE time >= '{s}' AND time < '{e}' GROUP BY time(60s)"), runs=3),
            "C": median_ms(q(f"SELECT mean(value) FROM cpu_util WHERE time >= '{h}' AND time < '{e}' "
                             "GROUP BY resource_id")),
        }
        proc.terminate()
        proc.wait(30)  # shut down flushes the WAL into TSM files: measure what stays on disk
        res["bytes"] = dir_size(data) / len(rows)
        return res
    finally:
        if proc.poll() is None:
            proc.kill()


def victoria(rows, day: datetime, scratch: Path) -> dict[str, Any]:
    port = free_port()
    data = scratch / "vm"
    binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    proc = subprocess.Popen([binary, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
                             "-retentionPeriod=100y", "-search.disableCache"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/health")
        c = httpx.Client(base_url=base, timeout=600)
        chunks = line_protocol(rows)
        t = time.perf_counter()
        for ch in chunks:
            c.post("/write", params={"precision": "ms"}, content=ch).raise_for_status()
        c.get("/internal/force_flush")
        ingest = len(rows) / (time.perf_counter() - t)
        s, e = int(day.timestamp()), int((day + timedelta(days=1)).timestamp())

        def qr(expr: str) -> Callable[[], Any]:
            return lambda: c.get("/api/v1/query_range", params={"query": expr, "start": s, "end": e - 60,
                                                                 "step": "60s"}).raise_for_status()

        def each(selector: str) -> Callable[[], Any]:
            # VictoriaMetrics answers one function per query: avg, min, max and count are four queries.
            fns = ("avg_over_time", "min_over_time", "max_over_time", "count_over_time")
            return lambda: [qr(f"{f}({selector}[60s])")() for f in fns]

        def each_all() -> Callable[[], Any]:
            outer = (("avg", "avg_over_time"), ("min", "min_over_time"), ("max", "max_over_time"),
                     ("sum", "count_over_time"))
            return lambda: [qr(f"{o}({f}(cpu_util_value[60s]))")() for o, f in outer]

        res = {
            "ingest": ingest,
            "A": median_ms(each('cpu_util_value{resource_id="res-7"}')),
            "B": median_ms(each_all(), runs=3),
            "C": median_ms(lambda: c.get("/api/v1/query", params={
                "query": "avg_over_time(cpu_util_value[1h])", "time": e}).raise_for_status()),
        }
        proc.terminate()  # a graceful stop flushes the in-memory parts: measure what stays on disk
        proc.wait(60)
        res["bytes"] = dir_size(data) / len(rows)
        return res
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--pg", default=None, help="also measure PostgreSQL at this URL (a scratch database)")
    ap.add_argument("--skip-peers", action="store_true")
    args = ap.parse_args()
    day = (datetime.now(timezone.utc) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows, step = dataset(args.samples, day)
    # The collector as `telemetry run` sets it once started (telemetry/gctune.py). It also freezes the
    # 10M tuples this harness holds for the peers (a daemon holds none), so full GC passes skip them.
    tune_for_daemon()
    print(f"{len(rows):,} samples: {RESOURCES} resources every {step:.2f} s over {day.date()}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        scratch = Path(tmp)
        results["ours (SQLite)"] = ours("sqlite://", rows, day, scratch / "sqlite")
        print("ours (SQLite) done", flush=True)
        if args.pg:
            results["ours (PostgreSQL)"] = ours(args.pg, rows, day, scratch)
        if not args.skip_peers:
            results["InfluxDB 1.6"] = influx(rows, day, scratch)
            print("InfluxDB done", flush=True)
            results["VictoriaMetrics"] = victoria(rows, day, scratch)
    names = list(results)
    print(f"\n{'':24}" + "".join(f"{n:>20}" for n in names))
    for key, label, fmt in (("ingest", "ingest samples/s", "{:,.0f}"), ("bytes", "bytes/sample on disk", "{:.1f}"),
                            ("A", "A one resource 60s (ms)", "{:.1f}"), ("B", "B all resources 60s (ms)", "{:.1f}"),
                            ("C", "C avg per res 1h (ms)", "{:.1f}")):
        print(f"{label:24}" + "".join(f"{fmt.format(results[n][key]):>20}" for n in names))
    ref = results["ours (SQLite)"]
    for peer in ("InfluxDB 1.6", "VictoriaMetrics"):
        if peer in results:
            p = results[peer]
            print(f"ratio ours/{peer}: ingest {ref['ingest'] / p['ingest']:.2f}x, "
                  f"A {p['A'] / ref['A']:.2f}x faster, B {p['B'] / ref['B']:.2f}x faster, "
                  f"C {p['C'] / ref['C']:.2f}x faster, bytes {ref['bytes'] / p['bytes']:.2f}x")
    if "B_raw" in ref:
        print(f"(ours B from raw samples instead of roll-ups: {ref['B_raw']:.1f} ms)")


if __name__ == "__main__":
    main()
