"""The console's Logs page over 1 million events: a phrase search over the last 24 h, first page and histogram.

    .venv/bin/python benchmarks/console.py [--events 1000000] [--keep DIR]

Builds an event store of ``--events`` rows, all within the last 24 hours
(the worst case for a 24 h search: every row is in range), starts
``telemetry run`` on it and asks what the Logs page asks, the same two
requests in parallel: ``/v1/events?q="PHRASE"&start=-24h&limit=200`` and
``/v1/events/histogram`` at the page's interval (30 min for 24 h). Measured
for a rare phrase (one line in 10,000) and a common one (one in 7). Target:
under 1 s for both, wall clock from the browser's side.

Then, in-process, the first page alone by both plans (events/paging.py: the
newest rows of the range walked first; and the SQLite planner's own plan,
which fetches and sorts every full-text match), for queries from rare to
common.

The peer, in the same run, is what an operator without the console does:
``grep -F PHRASE`` over the same lines as one text file, its output through
``tail -n 200`` (the newest page; no histogram). The ratio is grep's time
over ours.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import DaemonProcess
from events import COMPONENTS, LEVELS, PHRASE, TEMPLATES

from telemetry.events.rows import COLUMNS, Row
from telemetry.events.store import EventStore
from telemetry.events.times import to_micros
from telemetry.timeutil import utcnow

COMMON = "spawned successfully"  # in one template of seven
PAGE, INTERVAL = 200, "1800s"  # what the Logs page asks for a 24 h range


def rows_in_last_day(count: int, seed: int = 11) -> list[Row]:
    rnd = random.Random(seed)
    end = to_micros(utcnow()) - 60_000_000  # a minute ago: every row is inside the 24 h window
    step = (86_400_000_000 - 120_000_000) // count
    out: list[Row] = []
    for i in range(count):
        comp = COMPONENTS[(i // 5) % len(COMPONENTS)]
        msg = f"{PHRASE}: libvirtError {i}" if i % 10_000 == 1234 else rnd.choice(TEMPLATES).format(
            n=rnd.randint(1, 9999), u=f"{rnd.getrandbits(64):016x}")
        values = {"id": f"ev-{i:09d}", "host": f"cn{i % 40:02d}", "component": comp, "type": "openstack",
                  "level": rnd.choice(LEVELS), "logger": f"{comp}.manager", "pid": 30000 + i % 50,
                  "request_id": f"req-{i // 5:08x}-5b3c-4f0e-9a55-0c2d6b3e8f11", "user_id": None,
                  "project_id": None, "instance_id": None, "event_type": None, "publisher_id": None, "message": msg}
        out.append((end - (count - i) * step, *(values[c] for c in COLUMNS), "[]", "{}"))
    return out


def page_and_histogram(url: str, phrase: str) -> tuple[float, int, int]:
    """Wall ms for both requests in parallel (as the browser sends them), rows on the page, total matches."""
    q = f'"{phrase}"'
    with httpx.Client(base_url=url, timeout=60) as c, ThreadPoolExecutor(2) as pool:
        t = time.perf_counter()
        page = pool.submit(c.get, "/v1/events", params={"q": q, "start": "-24h", "end": "now", "limit": PAGE})
        hist = pool.submit(c.get, "/v1/events/histogram",
                           params={"q": q, "start": "-24h", "end": "now", "interval": INTERVAL})
        p, h = page.result(), hist.result()
        ms = (time.perf_counter() - t) * 1000
    p.raise_for_status()
    h.raise_for_status()
    return ms, len(p.json()), int(h.json()["total"])


def grep_ms(path: Path, phrase: str) -> float:
    t = time.perf_counter()
    subprocess.run(f"grep -F {phrase!r} {path} | tail -n {PAGE} > /dev/null", shell=True, check=True)
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="build (or reuse) the store in this folder instead of a temporary one")
    args = ap.parse_args()

    tmp = args.keep or Path(tempfile.mkdtemp(prefix="console-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    rows = rows_in_last_day(args.events)
    text = tmp / "lines.log"
    events_dir = tmp / "d" / "data" / "events"
    if not (tmp / "built").exists() or (tmp / "built").read_text() != str(args.events):
        shutil.rmtree(tmp / "d", ignore_errors=True)
        t = time.perf_counter()
        store = EventStore(events_dir, ttl=30 * 86400.0, min_free_disk=0)
        for i in range(0, len(rows), 5_000):
            store.insert(rows[i: i + 5_000])
        store.close()
        with text.open("w") as fh:
            fh.writelines(f"{r[0]} {r[3]} {r[5]} {r[-3]}\n" for r in rows)
        (tmp / "built").write_text(str(args.events))
        print(f"built {args.events:,} events in {time.perf_counter() - t:.0f} s under {tmp}")
    del rows

    d = DaemonProcess(tmp / "d", "run", {"store": {"ttl": {"events": "30d"}},
                                         "sources": {"files": [], "checks": {"enabled": False}}})
    d.start()
    try:
        print(f"{args.events:,} events in the last 24 h; the Logs page's two requests in parallel, {args.runs} runs")
        print(f"{'phrase':28} {'matches':>8} {'ours median ms':>15} {'ours max ms':>12} {'grep ms':>9} "
              f"{'ratio grep/ours':>16}")
        for phrase in (PHRASE, COMMON):
            page_and_histogram(d.url, phrase)  # warm: the page cache, the API's reader connections
            runs = [page_and_histogram(d.url, phrase) for _ in range(args.runs)]
            ms = [r[0] for r in runs]
            grep = statistics.median(grep_ms(text, phrase) for _ in range(3))
            ours = statistics.median(ms)
            print(f"{phrase!r:28} {runs[0][2]:8,} {ours:15.0f} {max(ms):12.0f} {grep:9.0f} {grep / ours:16.2f}"
                  f"   {'under 1 s' if max(ms) < 1000 else 'OVER 1 s'}")
    finally:
        d.stop()
    page_by_plan(events_dir, args.runs)


def page_by_plan(events_dir: Path, runs: int) -> None:
    """The first page alone, in-process: through events/paging (the newest rows first) and the planner's plan alone."""
    import telemetry.events.store as store_module

    store = EventStore(events_dir, ttl=30 * 86400.0, min_free_disk=0)
    start, end = utcnow() - timedelta(hours=24), utcnow()
    queries = [f'"{PHRASE}"', f'"{COMMON}"', f'component:nova AND "{COMMON}"', f'level:ERROR AND "{COMMON}"', "GET"]
    print(f"\nfirst page of {PAGE} alone, in-process, best of {runs}:")
    print(f"{'query':44} {'paging ms':>10} {'planner ms':>11} {'ratio':>7}")
    paging = store_module.recent_page
    for q in queries:
        figures = []
        for plan in (paging, lambda *a: None):
            store_module.recent_page = plan  # type: ignore[assignment]
            store.search(q, start, end, limit=PAGE)
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                store.search(q, start, end, limit=PAGE)
                times.append((time.perf_counter() - t) * 1000)
            figures.append(min(times))
        store_module.recent_page = paging
        print(f"{q:44} {figures[0]:10.1f} {figures[1]:11.1f} {figures[1] / figures[0]:7.2f}")
    store.close()


if __name__ == "__main__":
    main()
