"""The whole log path, end to end, against rsyslog: lines appended to a tailed file until searchable.

Ours: a running daemon (``telemetry run``, or an agent and servers over a real
bus) tails a file; N real-shaped oslo.log lines, each with its own
millisecond, are appended to it; the clock stops when all N are searchable
through the API (``/v1/events/histogram`` counts them), so tailing, joining,
shipping, parsing, storing (with the full-text index) and the default log
alarms are all inside the figure. CPU is user + system of the daemon(s) and
their children over the same interval, and with a PostgreSQL events store that
of the database backends serving it (found by the run's application_name).

rsyslog, in the same run on the same file: imfile (inotify) to omfile, the
cheapest real path it has (it ships; it neither parses nor indexes).

    .venv/bin/python benchmarks/pipeline.py [--lines 100000] [--bus memory|amqp|kafka] [--servers N]
                                           [--profile PREFIX]
    .venv/bin/python benchmarks/pipeline.py --goals

``--goals`` runs the three deployments issue 23 sets goals for, one after the other in one
invocation (all-in-one 300,000 lines, agent -> RabbitMQ -> server 100,000, agent -> Kafka ->
server 50,000), each beside rsyslog as below, and ends with a table of the goals (40,000 lines/s
at no more than 40 CPU s per million lines; 0.8x bare aiokafka) and whether this run met each.

Steady state needs more lines than the default: the stages remember the last
100,000-200,000 record ids to recognise redeliveries, and a window that costs more
once full (one did: 39 µs an event) shows only past it. Run ``--lines 300000`` too.
CPU is printed by process (the daemon, its parse worker and event store writer), and
"cores busy" (CPU seconds a second of the run): with two cores, a figure well under 2 says the
processes wait on each other (or on the peers beside them), not that they lack CPU.

The daemons run the package of the checkout this script is in (their working directory, first on
their ``sys.path`` under ``-m``; ``PYTHONPATH`` does not reach past it), and the summary names its
commit. To compare with another version, copy this script into a worktree of it and run it there.

``--profile`` runs py-spy on each daemon while it ingests and writes its collapsed stacks
(PREFIX.<n>.txt); py-spy is in the ``bench`` extra (the one beside this interpreter, else PATH's). The daemons print
how their stages batched (records per batch, from /metrics) before the figures.

``--bus amqp`` runs ``telemetry agent`` -> the local RabbitMQ (a vhost of its
own) -> ``--servers`` ``telemetry server`` processes; ``--bus kafka`` the same
over librdkafka's mock cluster (started here). With several servers the
events land in each server's own store unless ``--events-url`` points them at
a shared one; the count is taken over all of them (over one, when shared). A
``postgresql://`` events URL gets a new schema for each run, dropped after.
RabbitMQ's own CPU in the timed window is printed beside ours (not in the figure:
it is the broker's, but it runs on the same two cores). ``--bus-setting
NAME=VALUE`` (repeatable) sets a ``bus`` setting of every daemon, to compare
tunings: ``--bus-setting records_per_message=100``.

``--scaling`` runs one server first, then ``--servers`` of them, on the same
bus and the same lines, and prints the ratio of their throughputs (the peer
of a cluster is the single server it replaces), beside rsyslog's figures:

    .venv/bin/python benchmarks/pipeline.py --bus kafka --servers 2 --scaling \
        --events-url postgresql://postgres@127.0.0.1:5432/test
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
from typing import Any, NamedTuple

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


def make_lines(n: int, start: datetime, seq: str = "{i}") -> list[str]:
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
                   f"9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d - default default] {msg} seq={seq.format(i=i)}\n")
    return out


class Proc:
    """A daemon subprocess; the API address comes from its start banner."""

    def __init__(self, mode: str, config: dict, folder: Path, env: dict[str, str] | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.cfg = folder / "telemetry.yaml"
        self.cfg.write_text(yaml.safe_dump(config))
        self.log = folder / f"{mode}.log"
        self.p = subprocess.Popen([sys.executable, "-m", "telemetry", mode, "-c", str(self.cfg)],
                                  stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT,
                                  env={**os.environ, **(env or {})})
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

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the daemon and of each kind of child (``run``, ``run/telemetry.parse.worker``)."""
        parts: dict[str, float] = {}
        with contextlib.suppress(psutil.Error):
            for p in [self.ps, *self.ps.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    cmd = p.cmdline()
                    # A child runs ``-m module`` or ``-c <launcher> module`` (telemetry.workerproc).
                    child = cmd[2] if cmd[1:2] == ["-m"] else cmd[3] if cmd[1:2] == ["-c"] and len(cmd) > 3 else cmd[0]
                    kind = self.mode if p is self.ps else f"{self.mode}/{child}"
                    parts[kind] = parts.get(kind, 0.0) + t.user + t.system
        return parts

    def stop(self) -> None:
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


#: The harness's one HTTP client: ``httpx.get`` builds a client (and its TLS context) per call, 30 ms of
#: CPU each on this machine, against 1.8 for a request on a kept client. Polled every 0.1 s, that was
#: most of the harness's CPU in the timed window, on the same two cores as the pipeline it measures.
HTTP = httpx.Client(timeout=30)


def searchable(urls: list[str], start: datetime, query: str | None = None) -> int:
    """Events stored since ``start`` that match ``query`` (None: all of them), over every server's API."""
    total = 0
    for url in urls:
        r = HTTP.get(f"{url}/v1/events/histogram", params={"q": query, "interval": "1d",
                                                           "start": start.isoformat()})
        r.raise_for_status()
        total += r.json()["total"]
    return total


def batches(urls: list[str]) -> None:
    """How the servers' stages batched (records per transaction drive the store's cost)."""
    for url in urls:
        text = HTTP.get(f"{url}/metrics").text
        for stage in ("stage.parse", "stage.events", "stage.rules"):
            n = re.search(rf'telemetry_stage_batch_seconds_count{{stage="{re.escape(stage)}"}} ([\d.e+]+)', text)
            got = re.search(rf'telemetry_stage_records_in_total{{stage="{re.escape(stage)}"}} ([\d.e+]+)', text)
            busy = re.search(rf'telemetry_stage_batch_seconds_sum{{stage="{re.escape(stage)}"}} ([\d.e+]+)', text)
            if n and got and float(n.group(1)):
                print(f"{url} {stage}: {float(got.group(1)):,.0f} records in {float(n.group(1)):,.0f} batches "
                      f"({float(got.group(1)) / float(n.group(1)):,.0f} a batch, "
                      f"{float(busy.group(1)) if busy else 0:.2f} s handling them)")


def broker_cpu(kind: str) -> float | None:
    """CPU seconds so far of this machine's RabbitMQ (its Erlang VM), which the amqp runs share two cores with."""
    if kind != "amqp":
        return None
    total = None
    for p in psutil.process_iter(["name"]):
        if p.info["name"] == "beam.smp":
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total = (total or 0.0) + t.user + t.system
    return total


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


#: bus.kafka.fetch_max_wait of the daemons on the mock cluster: a real broker answers a fetch as soon as
#: records arrive, the mock holds an empty one for the whole wait (500 ms by default), and every stage that
#: caught up then slept that long: the figure was the mock's, not ours.
MOCK_FETCH_WAIT = 0.02

#: Partitions of a topic librdkafka's mock cluster creates on first use.
MOCK_PARTITIONS = 4


def host_names(kind: str, n: int) -> list[str]:
    """``n`` agent host names; on Kafka, dealt out evenly over the partitions their records are keyed to.

    A cloud's hundreds of hosts spread over the partitions by hashing; four hosts would
    not (``bench-0`` .. ``bench-3`` hash to partitions 1, 1, 3, 0), and one server would then
    get three quarters of the lines whatever the number of servers.
    """
    if kind != "kafka":
        return [f"bench-{i}" for i in range(n)]
    from aiokafka.partitioner import DefaultPartitioner

    partition = DefaultPartitioner()
    parts = list(range(MOCK_PARTITIONS))
    by_partition: dict[int, list[str]] = {p: [] for p in parts}
    k = 0
    while any(len(v) < -(-n // MOCK_PARTITIONS) for v in by_partition.values()):
        name = f"bench-{k}"
        by_partition[partition(name.encode(), parts, parts)].append(name)
        k += 1
    return [by_partition[i % MOCK_PARTITIONS][i // MOCK_PARTITIONS] for i in range(n)]


def database_cpu(url: str | None) -> dict[int, float]:
    """CPU seconds so far of the PostgreSQL backends serving ``url``'s connections (by application_name)."""
    if not url or "application_name=" not in url:
        return {}
    import psycopg

    app = url.rsplit("application_name=", 1)[1]
    with psycopg.connect(url, autocommit=True) as c:
        pids = [r[0] for r in c.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,))]
    out = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
    return out


def tail(path: Path) -> list[dict]:
    return [{"paths": [str(path)], "fields": {"type": "openstack", "component": "nova"}, "multiline": "python"}]


@contextlib.contextmanager
def events_store(url: str | None) -> Iterator[str | None]:
    """``url`` itself, or for PostgreSQL a URL on a new schema of its own (so no run counts another's lines)."""
    if not url or not url.startswith(("postgresql://", "postgres://")):
        yield url
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}&application_name={schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


def warm_up(api_urls: list[str], logs: list[Path], start: datetime) -> None:
    """A line in each tailed file, before the timed window, until it is searchable.

    The figure is of a running pipeline. A Kafka topic comes into being with its first record and
    the consumer groups then rebalance to read it: over 50,000 lines that was a second of 3.7 (the
    parse stage's first records came 1.1 s after the agent's were confirmed), a cost paid once per
    cluster, not per line. The line is stamped before ``start``, so the window's count leaves it out.
    """
    for i, path in enumerate(logs):
        with path.open("a") as f:
            f.write(make_lines(1, start - timedelta(seconds=30), seq=f"warmup{i}")[0])
    deadline = time.monotonic() + 120
    for i in range(len(logs)):
        while not searchable(api_urls, start - timedelta(minutes=1), f'"seq=warmup{i}"'):
            if time.monotonic() > deadline:
                raise SystemExit("the warm-up lines were not searchable within 120 s")
            time.sleep(0.1)


def py_spy() -> str:
    """The py-spy of this interpreter's environment: the benchmarks run as `.venv/bin/python`, with no PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


def run_ours(tmp: Path, log: Path, lines: list[str], kind: str, servers: int, events_url: str | None,
             start: datetime, agents: int = 1, settle: float = 1.0,
             profile: str | None = None, parse_workers: int | None = None,
             bus_settings: dict[str, Any] | None = None) -> tuple[float, float, float | None]:
    """Wall and CPU seconds from the first line written to the last searchable, and on Kafka our
    throughput's ratio to bare aiokafka's on the same mock cluster (``bare_aiokafka_beside``).

    With ``agents`` > 1 each agent (its own host name, so its own partition key, as the
    compute nodes of a cloud) tails its own file, and the lines are dealt out among them.
    """
    base = {"host": "bench", "logging": {"level": "WARNING"}, "api": {"port": 0},
            "sources": {"host_metrics": {"enabled": False}, "ceilometer": {"enabled": False}, "files": [],
                        # Zabbix's fixed ports would collide between servers on one machine.
                        "zabbix": {"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0"}}}
    if parse_workers is not None:
        base["parse"] = {"workers": parse_workers}
    # librdkafka's mock coordinator refuses a follower's SyncGroup that comes after the leader's (a real
    # broker does not): the tests' compensation (tests/bus_site) keeps rebalances from failing over and over.
    env = {"PYTHONPATH": str(ROOT / "tests" / "bus_site")} if kind == "kafka" else None
    logs = [log] if kind == "memory" or agents == 1 else [log.with_name(f"nova-{i}.log") for i in range(agents)]
    procs: list[Proc] = []
    with bus_for(kind) as url:
        try:
            if kind == "memory":
                cfg = {**base, "data_dir": str(tmp / "run")}
                cfg["sources"] = {**base["sources"], "files": tail(log)}
                procs.append(Proc("run", cfg, tmp / "run"))
                api_urls = [procs[0].url]
            else:
                env_bus: dict = {**(bus_settings or {}), "url": url, "topic_prefix": f"bench{uuid.uuid4().hex[:6]}."}
                if kind == "kafka":
                    env_bus["kafka"] = {**env_bus.get("kafka", {}), "fetch_max_wait": MOCK_FETCH_WAIT}
                for i in range(servers):
                    cfg = {**base, "host": f"server{i}", "data_dir": str(tmp / f"server{i}"), "bus": env_bus}
                    if events_url:
                        cfg["store"] = {"events": {"url": events_url}}
                    procs.append(Proc("server", cfg, tmp / f"server{i}", env))
                api_urls = [p.url for p in procs][:1 if events_url else None]  # a shared store: count once
                for i, path in enumerate(logs):
                    path.touch()
                    host = "bench" if len(logs) == 1 else host_names(kind, len(logs))[i]
                    agent = {**base, "host": host, "data_dir": str(tmp / f"agent{i}"), "bus": env_bus}
                    agent["sources"] = {**base["sources"], "files": tail(path)}
                    procs.append(Proc("agent", agent, tmp / f"agent{i}", env))
            time.sleep(settle)  # let the consumers join (and a Kafka group divide its partitions)
            warm_up(api_urls, logs, start)
            spies = [subprocess.Popen([py_spy(), "record", "--subprocesses", "--threads", "--format", "raw", "--rate", "100",
                                       "-o", f"{profile}.{i}.txt", "-p", str(p.p.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for i, p in enumerate(procs)] if profile else []
            cpu0 = [p.cpu() for p in procs]
            db0 = database_cpu(events_url)
            own0 = psutil.Process().cpu_times()
            broker0 = broker_cpu(kind)
            t0 = time.monotonic()
            outs = [path.open("a") for path in logs]
            for i, line in enumerate(lines):
                outs[i % len(outs)].write(line)
            for f in outs:
                f.close()
            n, last = len(lines), -1
            # The last line's phrase first (an FTS5 lookup), then the full count: counting host:bench
            # scans every row stored so far, and polling that every 0.2 s was a tenth of the daemon's
            # CPU in this figure, the harness's cost, not the pipeline's. The phrase is counted, not
            # listed: a search for a page walks the newest 20,000 rows first (events/paging.py), 3.6 ms
            # of the daemon's CPU a poll in a store of 200,000 rows while the line is not in, against
            # 0.25 for the count. The full count is of every event stored since the run's start (the
            # store is the run's own: a new data directory, or a schema of its own), read from the time
            # index: host:bench* compared every row's host, 0.18 s of 300,000 lines' 7.8, against 0.08.
            while not searchable(api_urls, start, f'"seq={n - 1}"'):
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
            by_role: dict[str, float] = {}
            for p, before in zip(procs, cpu0):
                for role, secs in p.cpu().items():
                    by_role[role] = by_role.get(role, 0.0) + secs - before.get(role, 0.0)
            if "application_name=" in (events_url or ""):
                by_role["postgresql"] = sum(t - db0.get(pid, 0.0) for pid, t in database_cpu(events_url).items())
            own = psutil.Process().cpu_times()
            print(f"  {servers} server(s): CPU s / M lines by process: "
                  + ", ".join(f"{k} {v / n * 1e6:.1f}" for k, v in by_role.items()), flush=True)
            # Not ours, on the same two cores: the writer of the lines, the polls and, on Kafka, the mock cluster.
            print(f"  this harness process{' with the mock cluster' if kind == 'kafka' else ''}: "
                  f"{(own.user + own.system - own0.user - own0.system) / n * 1e6:.1f} CPU s / M lines", flush=True)
            broker1 = broker_cpu(kind)
            if broker0 is not None and broker1 is not None:
                print(f"  RabbitMQ (beam.smp, not in the figure, on the same cores): "
                      f"{(broker1 - broker0) / n * 1e6:.1f} CPU s / M lines", flush=True)
            batches(api_urls)
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
                spy.wait(30)
            result = wall, sum(by_role.values())
        finally:
            for p in procs:
                p.stop()
        ratio = bare_aiokafka_beside(url, len(lines), len(lines) / result[0]) if kind == "kafka" else None
        return (*result, ratio)


def bare_aiokafka_beside(url: str, n: int, ours: float) -> float:
    """What aiokafka alone reaches on the same mock cluster, once our daemons have stopped.

    ``benchmarks/bus.py``'s bare producer and consumer (acks=all, the bus's default codec, a group with manual
    commits), ``n`` records of about a log line's size, a record a message, no decoding.
    """
    import asyncio

    sys.path.insert(0, str(ROOT))
    from bus import bare_aiokafka

    from tests.busenv import patch_aiokafka_for_mock

    patch_aiokafka_for_mock()
    pub, con = asyncio.run(bare_aiokafka(url.removeprefix("kafka://"), f"bare{uuid.uuid4().hex[:6]}", n))
    print(f"  bare aiokafka on the same mock cluster: publish {pub:,.0f}, consume {con:,.0f} records/s; "
          f"ours end to end / the slower of the two: {ours / min(pub, con):.2f}x", flush=True)
    return ours / min(pub, con)


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


def code_under_test() -> str:
    """The checkout the daemons ran, and its commit (``+`` with changes not committed)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty=+"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    return f"{ROOT} at {head}" if head else str(ROOT)


#: The issue's goals (issue 23), each deployment with its number of lines: ``--goals`` runs the three in one
#: invocation and tells which goal each figure meets. Lines/s and CPU seconds per million lines of ours.
GOAL_RATE = 40_000
GOAL_CPU = 40.0
#: Our end-to-end rate over Kafka against bare aiokafka's on the same mock cluster (the slower of its two).
GOAL_KAFKA_RATIO = 0.8
GOAL_RUNS = (("memory", 300_000), ("amqp", 100_000), ("kafka", 50_000))


class Measured(NamedTuple):
    """One deployment's figures: ours (one run per server count), rsyslog's beside them, Kafka's ratio."""

    lines: int
    runs: list[tuple[str, float, float]]
    rsyslog: tuple[float, float]
    kafka_ratio: float | None


def deployment(a: argparse.Namespace, kind: str, n_lines: int, bus_settings: dict[str, Any]) -> Measured:
    """Ours (one server, or one and then ``--servers`` with ``--scaling``) and rsyslog on the same lines; prints
    the figures as they come."""
    counts = [1, a.servers] if a.scaling else [a.servers]
    runs: list[tuple[str, float, float]] = []
    kafka_ratio = None
    with tempfile.TemporaryDirectory() as d:
        for n in counts:
            tmp = Path(d) / f"servers{n}"
            tmp.mkdir()
            log = tmp / "nova-compute.log"
            log.touch()
            start = datetime.now(timezone.utc) - timedelta(minutes=10)
            lines = make_lines(n_lines, start)
            with events_store(a.events_url) as events_url:
                settle = a.settle if a.settle is not None else 10.0 if n > 1 and kind == "kafka" else 1.0
                wall, cpu, kafka_ratio = run_ours(tmp, log, lines, kind, n, events_url, start - timedelta(seconds=1),
                                                  a.agents, settle, a.profile, a.parse_workers, bus_settings)
            what = "telemetry run" if kind == "memory" else f"agent(s) -> {kind} -> {n} server(s)"
            runs.append((f"{what}: tailed to searchable", wall, cpu))
        rs = Path(d) / "rsyslog"
        rs.mkdir()
        (rs / "nova-compute.log").write_text("".join(lines))
        theirs = run_rsyslog(rs, rs / "nova-compute.log", n_lines)
    store = "shared " + a.events_url.partition("://")[0] if a.events_url else "each server's own SQLite"
    print(f"{n_lines} lines, {os.cpu_count()} CPUs, {a.agents} agent(s), events in {store}; "
          f"code under test: {code_under_test()}")
    # Cores busy: CPU seconds a second of the run. Beside the CPU per line it tells a path that is short
    # of CPU from one whose processes wait on each other (the rest of the cores idle, or the peers').
    print(f"{'path':56} {'lines/s':>10} {'CPU s / M lines':>16} {'cores busy':>11}")
    for name, wall, cpu in [*runs, ("rsyslog imfile -> omfile (ships only)", *theirs)]:
        print(f"{name:56} {n_lines / wall:10,.0f} {cpu / n_lines * 1e6:16.1f} {cpu / wall:11.2f}")
    ours = runs[-1]
    print(f"ratio ours/rsyslog: throughput {theirs[0] / ours[1]:.3f}x, "
          f"CPU per line {ours[2] / theirs[1]:.1f}x", flush=True)
    if a.scaling:
        one = runs[0]
        print(f"ratio {a.servers} servers / 1 server: throughput {one[1] / ours[1]:.2f}x, "
              f"CPU per line {ours[2] / one[2]:.2f}x")
    return Measured(n_lines, runs, theirs, kafka_ratio)


def goals_table(measured: dict[str, Measured]) -> list[tuple[str, str, bool]]:
    """Each of the issue's goals: what it asks, the figure this run printed, whether it meets it."""
    rows: list[tuple[str, str, bool]] = []
    names = {"memory": "all-in-one (telemetry run)", "amqp": "agent -> RabbitMQ -> server",
             "kafka": "agent -> Kafka (mock) -> server"}
    for kind, m in measured.items():
        _, wall, cpu = m.runs[-1]
        rate, per_m = m.lines / wall, cpu / m.lines * 1e6
        if kind == "kafka":
            ratio = m.kafka_ratio or 0.0
            rows.append((f"{names[kind]}: >= {GOAL_KAFKA_RATIO}x bare aiokafka", f"{ratio:.2f}x ({rate:,.0f} lines/s)",
                         ratio >= GOAL_KAFKA_RATIO))
            continue
        rows.append((f"{names[kind]}: >= {GOAL_RATE:,} lines/s", f"{rate:,.0f}", rate >= GOAL_RATE))
        rows.append((f"{names[kind]}: <= {GOAL_CPU:.0f} CPU s per M lines", f"{per_m:.1f}", per_m <= GOAL_CPU))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--bus", choices=["memory", "amqp", "kafka"], default="memory")
    ap.add_argument("--goals", action="store_true",
                    help="run the issue's three deployments in one go (all-in-one 300,000 lines, RabbitMQ "
                         "100,000, Kafka 50,000) and print which goal each figure meets")
    ap.add_argument("--servers", type=int, default=1)
    ap.add_argument("--events-url", default=None, help="store.events.url shared by the servers")
    ap.add_argument("--scaling", action="store_true", help="run one server first, then --servers, and compare")
    ap.add_argument("--agents", type=int, default=1,
                    help="agents (hosts), each tailing its own share of the lines: Kafka keys records by host")
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds for the consumer groups to settle before the clock starts "
                         "(default 1, 10 with several servers on Kafka: the group rebalances)")
    ap.add_argument("--profile", default=None, metavar="PREFIX",
                    help="py-spy each daemon while it ingests (its CPU counts in the figure): PREFIX.<n>.txt, "
                         "collapsed stacks")
    ap.add_argument("--parse-workers", type=int, default=None, metavar="N",
                    help="parse.workers of each server (default: the daemon's default)")
    ap.add_argument("--bus-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="a bus setting of every daemon (YAML value), e.g. records_per_message=100; repeatable")
    a = ap.parse_args()
    bus_settings = {}
    for item in a.bus_setting:
        name, eq, value = item.partition("=")
        if not eq or not name:
            ap.error(f"--bus-setting takes NAME=VALUE, not {item!r}")
        bus_settings[name] = yaml.safe_load(value)
    if a.goals and (a.scaling or a.servers != 1 or a.agents != 1 or a.events_url or a.bus_setting):
        ap.error("--goals runs the issue's deployments as they are: one agent, one server, its own store, "
                 "the default bus settings")
    if bus_settings and a.bus == "memory":
        ap.error("--bus-setting applies to --bus amqp or kafka")
    if a.scaling and (a.bus == "memory" or a.servers < 2):
        ap.error("--scaling compares one server with --servers >= 2 over --bus amqp or kafka")
    if not a.goals:
        deployment(a, a.bus, a.lines, bus_settings)
        return
    measured: dict[str, Measured] = {}
    for kind, n_lines in GOAL_RUNS:
        print(f"== {kind}, {n_lines:,} lines", flush=True)
        measured[kind] = deployment(a, kind, n_lines, bus_settings)
    rows = goals_table(measured)
    print(f"\ngoals (issue 23), this run; code under test: {code_under_test()}")
    print(f"{'goal':62} {'figure':>28} {'met':>4}")
    for goal, figure, met in rows:
        print(f"{goal:62} {figure:>28} {'yes' if met else 'no':>4}")
    print(f"every goal met in this run: {'yes' if all(met for _, _, met in rows) else 'no'}")


if __name__ == "__main__":
    main()
