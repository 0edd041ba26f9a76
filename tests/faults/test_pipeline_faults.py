"""The whole path under faults: a steady writer's every line, tailed, shipped, parsed and stored exactly once.

A writer appends 2,000 oslo.log lines a second, each with its own sequence
number, to a file the agent tails; the lines go through the bus to the
server's parse stage and into its event store. While it writes, one fault is
done to the system. Afterwards every sequence number must be in the event
store exactly once (the store deduplicates on the record id, so a line
re-read after a crash is no duplicate; the same line under two ids is), and
the table at the end of the session says what each fault cost, with the time
from the end of the fault until everything written was stored.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgpack
import psutil
import pytest
from busenv import BUS_SITE, rabbit_vhost
from faults.brokers import KafkaMock, PrivateRabbit
from faults.support import SeqWriter, Tally, count, kill9

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FAULT_SECONDS = 3.0
KAFKA_FAST = {"session_timeout": "6s", "heartbeat_interval": "0.5s", "linger_ms": 1}


def stored(data_dir: Path) -> list[dict]:
    """Every event in the event store's day files (read-only, while the daemon may still write)."""
    out: list[dict] = []
    for db in sorted((data_dir / "events").glob("events-*.db")):
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            out += [{"id": i, "lines": [m]} for i, m in conn.execute("SELECT id, message FROM events")]
        except sqlite3.OperationalError:  # created a moment ago, schema not in yet
            pass
        finally:
            conn.close()
    return out


def files_source(logs: Path) -> dict:
    return {"files": [{"paths": [str(logs / "app.log")], "fields": {"type": "openstack", "component": "nova"},
                       "multiline": "python"}],
            "host_metrics": {"enabled": False}, "ceilometer": {"enabled": False}}


class Deployment:
    """``telemetry run``, or an agent and a server over a bus; where the events end up."""

    def __init__(self, factory: Callable[..., Any], tmp: Path, bus: str | None = None,
                 env: dict[str, str] | None = None, data_dir: Path | None = None) -> None:
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[Any] = []
        if bus is None:
            self.server = factory("run", {"sources": files_source(self.logs),
                                          **({"data_dir": str(data_dir)} if data_dir else {})}, env=env, sub="run")
            self.agent = self.server
            self.events_dir = data_dir or self.server.tmp / "data"
            self.procs = [self.server]
        else:
            section = {"url": bus, "topic_prefix": f"f{uuid.uuid4().hex[:6]}.", "kafka": KAFKA_FAST,
                       "publish_timeout": "5s"}
            env = {**(env or {}), "PYTHONPATH": BUS_SITE}
            self.server = factory("server", {"bus": section, "sources": {"ceilometer": {"enabled": False}}},
                                  env=env, sub="server")
            self.agent = factory("agent", {"bus": section, "sources": files_source(self.logs)}, env=env, sub="agent")
            self.events_dir = self.server.tmp / "data"
            self.procs = [self.server, self.agent]

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.proc is not None and p.proc.poll() is None:
                assert p.stop(signal.SIGTERM) == 0, p.output()[-3000:]


def seq_writer(dep: Deployment) -> SeqWriter:
    return SeqWriter(dep.logs / "app.log", rate=2000, start=datetime.now() - timedelta(minutes=5))


def run_fault(name: str, dep: Deployment, fault: Callable[[], None], heal: Callable[[], None],
              table: list[Tally], timeout: float = 90.0, writer: SeqWriter | None = None,
              before_stop: Callable[[], None] | None = None) -> Tally:
    """Write, do the fault, heal it, wait until every line is stored; count and record the row.

    ``before_stop`` checks more while the deployment still runs (dead letters, health).
    """
    writer = writer or seq_writer(dep)
    dep.start()
    writer.start()
    try:
        time.sleep(1.5)
        fault()
        time.sleep(FAULT_SECONDS)
        heal()
        healed = time.monotonic()
        time.sleep(1.5)
    finally:
        writer.stop()
    assert writer.error is None, writer.error
    recovery = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count(name, writer.written, stored(dep.events_dir)).shipped >= writer.written:
            recovery = time.monotonic() - healed
            break
        time.sleep(0.5)
    time.sleep(1.0)  # a late repeat would show now
    if before_stop is not None:
        before_stop()
    dep.stop()
    tally = count(name, writer.written, stored(dep.events_dir))
    tally.recovery = recovery
    table.append(tally)
    assert tally.exact, (f"{name}: {len(tally.lost)} lost (e.g. {tally.lost[:5]}), {len(tally.duplicated)} duplicated "
                         f"(e.g. {tally.duplicated[:5]})\n" + "\n".join(p.output()[-2000:] for p in dep.procs))
    return tally


def child_process(daemon: Any, module: str) -> psutil.Process:
    """The daemon's child process running ``module`` (its event store writer, its parse worker)."""
    [child] = [c for c in psutil.Process(daemon.proc.pid).children() if module in c.cmdline()]
    return child


def test_kill9_of_the_all_in_one(daemon_factory, tmp_path: Path, fault_table: list[Tally]) -> None:
    dep = Deployment(daemon_factory, tmp_path)
    children: list[psutil.Process] = []

    def fault() -> None:
        children.extend(child_process(dep.server, m) for m in ("telemetry.events.writer", "telemetry.parse.worker"))
        kill9(dep.server)
        for c in children:
            c.wait(10)  # their input closed with the daemon: it leaves no child behind

    run_fault("telemetry run, kill -9 and restart", dep, fault, dep.server.start, fault_table)


@pytest.mark.parametrize("module, what", [("telemetry.events.writer", "event store writer"),
                                          ("telemetry.parse.worker", "parse worker")])
def test_kill9_of_a_child_process(module: str, what: str, daemon_factory, tmp_path: Path,
                                  fault_table: list[Tally]) -> None:
    """A child dies mid-stream: the batch it held goes back to the bus and a new child takes it."""
    dep = Deployment(daemon_factory, tmp_path)
    killed: list[int] = []

    def fault() -> None:
        child = child_process(dep.server, module)
        killed.append(child.pid)
        child.kill()

    def check() -> None:
        assert child_process(dep.server, module).pid != killed[0]
        assert f"{what}: the child process" in dep.server.output()

    run_fault(f"telemetry run, kill -9 of its {what}", dep, fault, lambda: None, fault_table, before_stop=check)


@pytest.fixture
def vhost_url() -> Iterator[str]:
    with rabbit_vhost("faults") as url:
        yield url


@pytest.mark.parametrize("who", ["agent", "server"])
def test_kill9_in_a_split_deployment(who: str, daemon_factory, tmp_path: Path, vhost_url: str,
                                     fault_table: list[Tally]) -> None:
    dep = Deployment(daemon_factory, tmp_path, bus=vhost_url)
    victim = dep.agent if who == "agent" else dep.server
    run_fault(f"agent -> RabbitMQ -> server, kill -9 of the {who}", dep, lambda: kill9(victim), victim.start,
              fault_table)


def test_kill9_of_the_agent_over_kafka(daemon_factory, tmp_path: Path, fault_table: list[Tally]) -> None:
    """Over Kafka the agent has up to 64 batches under way, their acks not yet back: killed, it reads
    again whatever was not confirmed, and the stores' ids drop the repeats."""
    cluster = KafkaMock()
    try:
        dep = Deployment(daemon_factory, tmp_path, bus=cluster.url)
        run_fault("agent -> Kafka (mock) -> server, kill -9 of the agent", dep, lambda: kill9(dep.agent),
                  dep.agent.start, fault_table, timeout=120)
    finally:
        cluster.close()


def test_a_rabbitmq_restart(daemon_factory, tmp_path: Path, fault_table: list[Tally]) -> None:
    broker = PrivateRabbit().start()
    try:
        dep = Deployment(daemon_factory, tmp_path, bus=broker.url)
        run_fault("agent -> RabbitMQ -> server, broker restarted", dep, broker.stop, broker.start, fault_table,
                  timeout=120)
    finally:
        broker.remove()


def test_a_kafka_broker_that_hangs(daemon_factory, tmp_path: Path, fault_table: list[Tally]) -> None:
    cluster = KafkaMock()
    try:
        dep = Deployment(daemon_factory, tmp_path, bus=cluster.url)
        run_fault("agent -> Kafka (mock) -> server, broker frozen", dep, cluster.freeze, cluster.thaw, fault_table,
                  timeout=120)
    finally:
        cluster.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 96 MiB tmpfs of the test's own (root can mount one here; elsewhere the test is skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_the_data_folder_fills_up(daemon_factory, tmp_path: Path, small_disk: Path, fault_table: list[Tally]) -> None:
    dep = Deployment(daemon_factory, tmp_path, data_dir=small_disk / "data")
    filler = small_disk / "filler"

    def fill() -> None:
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        with filler.open("wb") as f:  # every byte but a few KiB: writes fail with ENOSPC
            while free > 16 << 10:
                chunk = min(free - (16 << 10), 4 << 20)
                try:
                    f.write(b"\0" * chunk)
                    f.flush()
                except OSError:
                    break
                free -= chunk

    seen: list[dict] = []

    def health_degraded_then_free() -> None:
        # /healthz must tell the truth while writes fail: degraded, naming the stage and the reason
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            health = httpx.get(dep.server.url + "/healthz", timeout=5).json()
            if health["status"] == "degraded":
                seen.append(health)
                break
            time.sleep(0.5)
        filler.unlink()

    run_fault("telemetry run, data folder full", dep, fill, health_degraded_then_free, fault_table)
    assert seen, "/healthz never said degraded while the disk was full"
    assert any("No space left" in str(p) or "full" in str(p) for p in seen[0]["problems"].values()), seen[0]["problems"]


def test_a_clock_jump(daemon_factory, tmp_path: Path, fault_table: list[Tally]) -> None:
    lib = next(iter(Path("/usr/lib").glob("*/faketime/libfaketime.so.1")), None)
    if lib is None:
        pytest.fail("libfaketime is missing: scripts/setup.sh installs Debian's faketime")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    env = {"LD_PRELOAD": str(lib), "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_CACHE_DURATION": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    dep = Deployment(daemon_factory, tmp_path, env=env)
    run_fault("telemetry run, wall clock jumps 3 h ahead and back", dep, lambda: offset.write_text("+3h\n"),
              lambda: offset.write_text("+0\n"), fault_table)


def _nested(depth: int) -> dict:
    node: dict = {"leaf": 1}
    for _ in range(depth):
        node = {"n": node}
    return node


def _nested(depth: int) -> dict:
    node: dict = {"leaf": 1}
    for _ in range(depth):
        node = {"n": node}
    return node


def test_poison_records_stop_nothing(daemon_factory, tmp_path: Path, fault_table: list[Tally]) -> None:
    """Issue 14's poison: a tailed line and a syslog datagram whose grok ``:int`` exceeds 64 bits, and a
    Ceilometer datagram nested 300 deep. Good lines and samples sent after them are stored within 2 s."""
    dep = Deployment(daemon_factory, tmp_path)
    dep.server.config_path.write_text(dep.server.config_path.read_text())  # (the deployment's own config)
    import yaml

    cfg = yaml.safe_load(dep.server.config_path.read_text())
    cfg["sources"]["syslog"] = {"listen": "127.0.0.1:0"}
    cfg["sources"]["ceilometer"] = {"enabled": True, "udp": "127.0.0.1:0"}
    dep.server.config_path.write_text(yaml.safe_dump(cfg))
    writer = seq_writer(dep)
    huge = "9" * 23
    line = f"{datetime.now():%Y-%m-%d %H:%M:%S.%f}"[:-3] + f" {huge} INFO nova.compute.manager [req-0 - - - - -] poison"
    sent: dict[str, float] = {}

    def address(component: str) -> tuple[str, int]:
        where = dep.server.listen(component).split(",")[0]
        host, _, port = where.split("/")[0].rpartition(":")
        return host, int(port)

    def poison() -> None:
        writer.do(lambda w: os.write(w.fd, (line + "\n").encode()) and None)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(f"<14>Mar  2 09:00:02 node1 nova-compute: {line}".encode(), address("source.syslog"))
            s.sendto(msgpack.dumps({"counter_name": "poison", "counter_type": "gauge", "counter_volume": 1,
                                    "resource_id": "r", "resource_metadata": _nested(300)}),
                     address("source.ceilometer_udp"))
            good = {"counter_name": "after.poison", "counter_type": "gauge", "counter_volume": 1.0,
                    "resource_id": "r", "timestamp": datetime.now().astimezone().isoformat()}
            s.sendto(msgpack.dumps(good), address("source.ceilometer_udp"))
        sent["at"] = time.monotonic()

    def accounted_for() -> None:
        api = dep.server.url
        stored_sample = httpx.get(f"{api}/v2/meters/after.poison", timeout=5).json()
        assert stored_sample, "the sample sent after the poison was not stored"
        poisoned = httpx.get(f"{api}/v1/events", params={"q": "poison", "limit": 10}, timeout=5).json()
        assert len(poisoned) == 2 and all(e.get("pid_raw") == huge for e in poisoned), poisoned  # file and syslog
        letters = httpx.get(f"{api}/v1/dead-letters", timeout=5).json()
        assert any(d["reason"] == "too_complex" and d["topic"] == "refused:source.ceilometer_udp" for d in letters)

    run_fault("poison: 64-bit overflow line, syslog datagram, 300-deep Ceilometer datagram", dep, poison,
              lambda: None, fault_table, writer=writer, before_stop=accounted_for)
    assert fault_table[-1].recovery is not None and fault_table[-1].recovery < 2.0 + 1.5, fault_table[-1]
