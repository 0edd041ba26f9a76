"""Gnocchi API benchmark: our ``/gnocchi`` against the real Gnocchi server, the same gnocchiclient calls.

Both servers run on loopback in this run: ``telemetry run`` (embedded store) and Gnocchi 4 from
``.venv-gnocchi`` (PostgreSQL indexer, file storage, gunicorn, metricd with one worker per core).
Each gets the same archive policy, resource type, 1,000 resources with a ``cpu_util`` metric, and the
same measures through ``metric.batch_resources_metrics_measures`` (100 resources per request). Printed:

  * measures written per second *until readable*: from the first batch to the moment an aggregate
    over every resource counts every measure (Gnocchi's metricd must have processed them all);
  * latency of one resource's measures (``metric.get_measures``, median of --reads random resources);
  * latency of an aggregate across the 1,000 resources (``aggregates.fetch`` of
    ``(aggregate mean (metric cpu_util mean))`` over a search, median of --aggregates runs);
  * the ratios. Goal: at least 5x Gnocchi's write rate, ahead on every query.

    .venv/bin/python benchmarks/gnocchi.py [--resources 1000] [--measures 60]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline import Proc  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.gnocchi_support import RealGnocchi, client  # noqa: E402

POLICY = {"name": "bench", "back_window": 0, "aggregation_methods": ["mean", "max", "count"],
          "definition": [{"granularity": 60, "timespan": "1 day"}]}
RTYPE = {"name": "bench_vm", "attributes": {"server_group": {"type": "string", "required": False}}}
OPS = "(aggregate mean (metric cpu_util mean))"
SEARCH = {"=": {"server_group": "bench"}}


def prepare(c: Any, ids: list[str]) -> None:
    c.archive_policy.create(POLICY)
    c.resource_type.create(RTYPE)
    for rid in ids:
        c.resource.create("bench_vm", {"id": rid, "server_group": "bench",
                                       "metrics": {"cpu_util": {"archive_policy_name": "bench"}}})


def batches(ids: list[str], per: int, t0: datetime) -> list[dict[str, Any]]:
    rng = random.Random(7)
    out = []
    for i in range(0, len(ids), 100):
        out.append({rid: {"cpu_util": [{"timestamp": (t0 + timedelta(seconds=10 * k)).isoformat(),
                                        "value": round(rng.uniform(0, 100), 3)} for k in range(per)]}
                    for rid in ids[i:i + 100]})
    return out


def counted(c: Any) -> float:
    got = c.aggregates.fetch("(aggregate sum (metric cpu_util count))", search=SEARCH, resource_type="bench_vm",
                             granularity=60, needed_overlap=0)
    return sum(v for _, _, v in got["measures"].get("aggregated", []))


def write(c: Any, payload: list[dict[str, Any]], total: int, timeout: float) -> tuple[float, float]:
    """Seconds from the first batch until every measure is readable, and of those, the POSTs' own."""
    start = time.perf_counter()
    for body in payload:
        c.metric.batch_resources_metrics_measures(body)
    posted = time.perf_counter() - start
    while counted(c) < total:
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"measures not readable after {timeout}s")
        time.sleep(0.2)
    return time.perf_counter() - start, posted


def reads(c: Any, ids: list[str], n: int, total: int, per: int) -> float:
    rng = random.Random(11)
    times = []
    for _ in range(n):
        rid = rng.choice(ids)
        t = time.perf_counter()
        got = c.metric.get_measures("cpu_util", resource_id=rid, granularity=60)
        times.append(time.perf_counter() - t)
        assert got, "no measures"
    return statistics.median(times)


def aggregates(c: Any, n: int) -> tuple[float, list[Any]]:
    times, got = [], []
    for _ in range(n):
        t = time.perf_counter()
        got = c.aggregates.fetch(OPS, search=SEARCH, resource_type="bench_vm", granularity=60, needed_overlap=0)
        times.append(time.perf_counter() - t)
    return statistics.median(times), got["measures"]["aggregated"]


def run_side(name: str, c: Any, args: argparse.Namespace, t0: datetime) -> dict[str, Any]:
    ids = [str(uuid.uuid4()) for _ in range(args.resources)]
    t = time.perf_counter()
    prepare(c, ids)
    setup = time.perf_counter() - t
    total = args.resources * args.measures
    seconds, posted = write(c, batches(ids, args.measures, t0), total, args.timeout)
    read = reads(c, ids, args.reads, total, args.measures)
    agg, values = aggregates(c, args.aggregates)
    print(f"{name:8s} setup {setup:6.2f}s  write {total / seconds:9.0f} measures/s ({seconds:.2f}s, POSTs {posted:.2f}s)  "
          f"one resource {read * 1000:7.2f} ms  aggregate x{args.resources} {agg * 1000:8.2f} ms", flush=True)
    return {"rate": total / seconds, "read": read, "agg": agg, "values": values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resources", type=int, default=1000)
    ap.add_argument("--measures", type=int, default=60, help="measures per resource (10 s apart)")
    ap.add_argument("--reads", type=int, default=50)
    ap.add_argument("--aggregates", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    t0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=1)
    with tempfile.TemporaryDirectory() as tmp:
        ours = Proc("run", {"data_dir": f"{tmp}/ours", "api": {"port": 0},
                            "sources": {"host_metrics": {"enabled": False}, "ceilometer": {"enabled": False},
                                        "zabbix": {"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0"}}},
                    Path(tmp) / "ours")
        real = RealGnocchi(Path(tmp) / "gnocchi", free_port(), workers=os.cpu_count() or 2)
        try:
            real.start()
            a = run_side("ours", client(ours.url + "/gnocchi"), args, t0)
            b = run_side("gnocchi", client(real.url, basic=True), args, t0)
        finally:
            ours.stop()
            real.stop()
    mine = [(t.isoformat(), v) for t, _, v in a["values"]]
    theirs = [(t.isoformat(), v) for t, _, v in b["values"]]
    same = len(mine) == len(theirs) and all(x[0] == y[0] and math.isclose(x[1], y[1], rel_tol=1e-9)
                                            for x, y in zip(mine, theirs))  # summation order differs
    print(f"aggregate values equal on both: {same}")
    if not same:
        print(f"  ours:    {mine}\n  gnocchi: {theirs}")
    print(f"ratio write rate ours/gnocchi {a['rate'] / b['rate']:.1f}x   one resource gnocchi/ours "
          f"{b['read'] / a['read']:.1f}x   aggregate gnocchi/ours {b['agg'] / a['agg']:.1f}x")


if __name__ == "__main__":
    main()
