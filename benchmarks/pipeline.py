"""The whole log path, end to end, against rsyslog: lines appended to a tailed file until searchable.

Ours: a running daemon (``telemetry run``, or an agent and servers over a real
bus) tails a file; N real-shaped oslo.log lines, each with its own
millisecond, are appended to it; the clock stops when all N are searchable
through the API (``/v1/events/histogram`` counts them), so tailing, joining,
shipping, parsing, storing (with the full-text index) and the default log
alarms are all inside the figure. CPU is user + system of the daemon(s) and
their children over the same interval.

rsyslog, in the same run on the same file: imfile (inotify) to omfile, the
cheapest real path it has (it ships; it neither parses nor indexes).

    .venv/bin/python benchmarks/pipeline.py [--lines 100000] [--bus memory|amqp|kafka] [--servers N]
                                           [--profile PREFIX]

``--profile`` runs py-spy on each daemon while it ingests and writes its collapsed stacks
(PREFIX.<n>.txt); py-spy is in the ``bench`` extra and must be on PATH. The daemons print
how their stages batched (records per batch, from /metrics) before the figures.

``--bus amqp`` runs ``telemetry agent`` -> the local RabbitMQ (a vhost of its
own) -> ``--servers`` ``telemetry server`` processes; ``--bus kafka`` the same
over librdkafka's mock cluster (started here). With several servers the
events land in each server's own store unless ``--events-url`` points them at
a shared one; the count is taken over all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
API_LINE = re.compile(r"API: (http://[\w.\-\[\]]+:\d+)")

#: Message shapes of a busy compute node (from the sample nova logs), filled per line.
SHAPES = [
    ("INFO", "nova.compute.claims", "[instance: {inst}] Claim successful on node cn{node:02d}.example.org"),
    ("INFO", "nova.virt.libvirt.driver", "[instance: {inst}] Creating image"),
    ("INFO", "nova.compute.manager", "[instance: {inst}] Took {sec:.2f} seconds to build instance."),
    ("DEBUG", "oslo_concurrency.lockutils", 'Lock "compute_resources" acquired by "nova.compute.resource_tracker.'
                                            'ResourceTracker.instance_claim" :: waited 0.000s'),
    ("INFO", "nova.compute.claims", "[instance: {inst}] Total memory: 64388 MB, used: {used}.00 MB"),
    ("INFO", "nova.compute.claims", "[instance: {inst}] memory limit: 96582.00 MB, free: {free}.00 MB"),
    ("WARNING", "nova.compute.manager", "While synchronizing instance power states, found {n} instances in the "
                                        "database and {m} instances on the hypervisor."),
    ("INFO", "nova.api.openstack.requestlog", '10.0.0.{n} "GET /v2.1/servers/{inst} HTTP/1.1" status: 200 len: '
                                              '1893 microversion: 2.1 time: 0.{ms:06d}'),
]


def make_lines(n: int, start: datetime) -> list[str]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        level, logger, text = SHAPES[rng.randrange(len(SHAPES))]
        ts = (start + timedelta(milliseconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        req = uuid.UUID(int=rng.getrandbits(128), version=4)
        msg = text.format(inst=uuid.UUID(int=rng.getrandbits(128), version=4), node=rng.randrange(40),
                          sec=rng.random() * 30, used=rng.randrange(512, 60000), free=rng.randrange(512, 60000),
                          n=rng.randrange(1, 250), m=rng.randrange(1, 250), ms=rng.randrange(999999))
        out.append(f"{ts} {31000 + rng.randrange(8)} {level} {logger} [req-{req} 6f1c0a3b2e8d4d7c9b1a2f3e4d5c6b7a "
                   f"9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d - default default] {msg} seq={i}\n")
    return out


class Proc:
    """A daemon subprocess; the API address comes from its start banner."""

    def __init__(self, mode: str, config: dict, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.cfg = folder / "telemetry.yaml"
        self.cfg.write_text(yaml.safe_dump(config))
        self.log = folder / f"{mode}.log"
        self.p = subprocess.Popen([sys.executable, "-m", "telemetry", mode, "-c", str(self.cfg)],
                                  stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
        self.ps = psutil.Process(self.p.pid)
        self.url = ""
        deadline = time.monotonic() + 60
        while not self.url:
            m = API_LINE.search(self.log.read_text(errors="replace"))
            if m:
                self.url = m.group(1)
            elif self.p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{mode} did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            else:
                time.sleep(0.1)

    def cpu(self) -> float:
        total = 0.0
        with contextlib.suppress(psutil.Error):
            for p in [self.ps, *self.ps.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
        return total

    def stop(self) -> None:
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def searchable(urls: list[str], start: datetime) -> int:
    """Events stored since ``start``, over every server's API."""
    total = 0
    for url in urls:
        r = httpx.get(f"{url}/v1/events/histogram", params={"q": "host:bench", "interval": "1d",
                                                           "start": start.isoformat()}, timeout=30)
        r.raise_for_status()
        total += r.json()["total"]
    return total


def batches(urls: list[str]) -> None:
    """How the servers' stages batched (records per transaction drive the store's cost)."""
    for url in urls:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        for stage in ("stage.parse", "stage.events", "stage.rules"):
            n = re.search(rf'telemetry_stage_batch_seconds_count{{stage="{re.escape(stage)}"}} ([\d.e+]+)', text)
            got = re.search(rf'telemetry_stage_records_in_total{{stage="{re.escape(stage)}"}} ([\d.e+]+)', text)
            if n and got and float(n.group(1)):
                print(f"{url} {stage}: {float(got.group(1)):,.0f} records in {float(n.group(1)):,.0f} batches "
                      f"({float(got.group(1)) / float(n.group(1)):,.0f} a batch)")


@contextlib.contextmanager
def bus_for(kind: str) -> Iterator[str]:
    if kind == "memory":
        yield "memory://"
        return
    sys.path.insert(0, str(ROOT))
    from tests.busenv import MockKafka, rabbit_vhost

    if kind == "amqp":
        with rabbit_vhost("bench") as url:
            yield url
        return
    cluster = MockKafka(brokers=1)
    try:
        yield cluster.url
    finally:
        cluster.close()


def run_ours(tmp: Path, log: Path, lines: list[str], kind: str, servers: int, events_url: str | None,
             start: datetime, profile: str | None = None) -> tuple[float, float]:
    base = {"host": "bench", "logging": {"level": "WARNING"}, "api": {"port": 0},
            "sources": {"host_metrics": {"enabled": False}, "ceilometer": {"enabled": False}, "files": []}}
    files = [{"paths": [str(log)], "fields": {"type": "openstack", "component": "nova"}, "multiline": "python"}]
    procs: list[Proc] = []
    with bus_for(kind) as url:
        try:
            if kind == "memory":
                cfg = {**base, "data_dir": str(tmp / "run")}
                cfg["sources"] = {**base["sources"], "files": files}
                procs.append(Proc("run", cfg, tmp / "run"))
                api_urls = [procs[0].url]
            else:
                env_bus = {"url": url, "topic_prefix": f"bench{uuid.uuid4().hex[:6]}."}
                for i in range(servers):
                    cfg = {**base, "data_dir": str(tmp / f"server{i}"), "bus": env_bus}
                    if events_url:
                        cfg["store"] = {"events": {"url": events_url}}
                    procs.append(Proc("server", cfg, tmp / f"server{i}"))
                api_urls = [p.url for p in procs]
                agent = {**base, "data_dir": str(tmp / "agent"), "bus": env_bus}
                agent["sources"] = {**base["sources"], "files": files}
                procs.append(Proc("agent", agent, tmp / "agent"))
            time.sleep(1.0)  # let the consumers join
            spies = [subprocess.Popen(["py-spy", "record", "--subprocesses", "--format", "raw", "--rate", "100",
                                       "-o", f"{profile}.{i}.txt", "-p", str(p.p.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for i, p in enumerate(procs)] if profile else []
            cpu0 = sum(p.cpu() for p in procs)
            t0 = time.monotonic()
            with log.open("a") as f:
                f.writelines(lines)
            n, last = len(lines), -1
            # The last line's phrase first (an FTS5 lookup), then the full count: counting host:bench
            # scans every row stored so far, and polling that every 0.2 s was a tenth of the daemon's
            # CPU in this figure, the harness's cost, not the pipeline's.
            while not any(httpx.get(f"{url}/v1/events", params={"q": f'"seq={n - 1}"', "limit": 1,
                                                                "start": start.isoformat()}, timeout=30).json()
                          for url in api_urls):
                if time.monotonic() - t0 > 600:
                    raise SystemExit("the last line was not searchable within 600 s")
                time.sleep(0.1)
            while True:
                got = searchable(api_urls, start)
                if got >= n:
                    break
                if got != last:
                    last, changed = got, time.monotonic()
                elif time.monotonic() - changed > 120:
                    raise SystemExit(f"stuck at {got} of {n} searchable events")
                time.sleep(0.2)
            wall = time.monotonic() - t0
            cpu = sum(p.cpu() for p in procs) - cpu0
            batches(api_urls)
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
                spy.wait(30)
            return wall, cpu
        finally:
            for p in procs:
                p.stop()


def run_rsyslog(tmp: Path, log: Path, n: int) -> tuple[float, float]:
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
            if out.exists():
                with out.open("rb") as f:
                    if sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) >= n:
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
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--bus", choices=["memory", "amqp", "kafka"], default="memory")
    ap.add_argument("--servers", type=int, default=1)
    ap.add_argument("--events-url", default=None, help="store.events.url shared by the servers")
    ap.add_argument("--profile", default=None, metavar="PREFIX",
                    help="py-spy each daemon while it ingests (its CPU counts in the figure): PREFIX.<n>.txt, "
                         "collapsed stacks")
    a = ap.parse_args()
    start = datetime.now(timezone.utc) - timedelta(minutes=10)
    lines = make_lines(a.lines, start)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        log = tmp / "nova-compute.log"
        log.touch()
        ours = run_ours(tmp, log, lines, a.bus, a.servers, a.events_url, start - timedelta(seconds=1), a.profile)
        theirs = run_rsyslog(tmp, log, a.lines)
    what = "telemetry run" if a.bus == "memory" else f"agent -> {a.bus} -> {a.servers} server(s)"
    rows = [(f"{what}: tailed to searchable", *ours), ("rsyslog imfile -> omfile (ships only)", *theirs)]
    print(f"{a.lines} lines, {os.cpu_count()} CPUs")
    print(f"{'path':50} {'lines/s':>10} {'CPU s / M lines':>16}")
    for name, wall, cpu in rows:
        print(f"{name:50} {a.lines / wall:10,.0f} {cpu / a.lines * 1e6:16.1f}")
    print(f"ratio ours/rsyslog: throughput {theirs[0] / ours[0]:.3f}x, "
          f"CPU per line {ours[1] / theirs[1]:.1f}x")


if __name__ == "__main__":
    main()
