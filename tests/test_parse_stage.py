"""The parse stage in a server runtime, and `telemetry parse` on the command line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson
from click.testing import CliRunner

from telemetry.bus import MemoryBus
from telemetry.bus.records import publish_records
from telemetry.cli import main
from telemetry.config import Settings
from telemetry.runtime import Runtime
from telemetry.wiring import server_components
from telemetry.metrics import exposition
from telemetry.models import Event, RawLog, decode
from telemetry.parse.parser import Parser
from telemetry.parse.stage import ParseStage


def runtime(tmp: Path) -> Runtime:
    return Runtime(settings=Settings(data_dir=tmp), mode="server", bus=MemoryBus(), data_dir=tmp)


async def test_stage_parses_raw_logs_into_events(tmp_path: Path, samples_dir: Path) -> None:
    rt = runtime(tmp_path)
    assert any(isinstance(c, ParseStage) for c in server_components(runtime(tmp_path / "wiring")))
    events_in = await rt.bus.subscribe(["events"], "inspect")
    stage = ParseStage(rt)
    await stage.start()
    lines = (samples_dir / "logs" / "keystone.log").read_text().splitlines()
    raws = [RawLog(host="ctl01", path="/var/log/keystone/keystone.log", component="keystone", type="openstack",
                   offset=i, inode=7, lines=[line], tags=["ctl"]) for i, line in enumerate(lines)]
    raws.append(RawLog(host="ctl01", path="/x", type="openstack", offset=99, inode=7, lines=["garbage"]))
    await publish_records(rt.bus, raws)
    got: list[Event] = []
    deadline = asyncio.get_running_loop().time() + 5
    while len(got) < 4 and asyncio.get_running_loop().time() < deadline:
        for d in await events_in.fetch(10, 0.2):
            got.append(decode(Event, d.value))
            await events_in.ack([d])
    await stage.stop()
    assert len(got) == 4
    by_id = {e.id: e for e in got}
    assert set(by_id) == {r.id for r in raws}  # redelivery dedups downstream on the RawLog id
    first = by_id[raws[0].id]
    assert (first.host, first.component, first.type, first.level) == ("ctl01", "keystone", "openstack", "INFO")
    assert first.request_id == "req-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d" and first.tags == ["ctl"]
    # keystone's "POST http://controller:5000/v3/auth/tokens": the request path; the file's beside it
    assert (first.model_extra or {})["log_path"] == "/var/log/keystone/keystone.log"
    assert (first.model_extra or {})["path"] == "/v3/auth/tokens" and (first.model_extra or {})["method"] == "POST"
    bad = by_id[raws[-1].id]
    assert bad.tags == ["_grokparsefailure"] and bad.message == "garbage"
    metrics = exposition().decode()
    assert 'telemetry_parse_matches_total{type="openstack"}' in metrics
    assert 'telemetry_parse_failures_total{type="openstack"}' in metrics
    assert stage.outcomes["match"] == 3 and stage.outcomes["failure"] == 1


class _WireBus(MemoryBus):
    """The memory bus as a broker looks to a publisher: records must travel as bytes."""

    in_process = False


async def test_behind_a_broker_the_stage_publishes_the_events_bytes_with_or_without_workers(tmp_path: Path,
                                                                                        samples_dir: Path) -> None:
    """Parsed in a worker or in the daemon (``parse.workers: 0``), an event goes out as the same bytes."""
    from telemetry.parse.parser import Parser

    lines = (samples_dir / "logs" / "keystone.log").read_text().splitlines()
    raws = [RawLog(host="ctl01", path="/k.log", type="openstack", offset=i, inode=7, lines=[line], read_at=0)
            for i, line in enumerate(lines)]
    published: dict[str, list[bytes]] = {}
    for how in ("worker", "daemon"):
        rt = Runtime(settings=Settings(data_dir=tmp_path), mode="server", bus=_WireBus(), data_dir=tmp_path)
        events_in = await rt.bus.subscribe(["events"], "inspect")
        stage = ParseStage(rt) if how == "worker" else ParseStage(rt, Parser.from_config(rt.settings.parse))
        assert bool(stage.workers) == (how == "worker")
        await stage.start()
        await publish_records(rt.bus, raws)
        got: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 10
        while len(got) < len(raws) and asyncio.get_running_loop().time() < deadline:
            ds = await events_in.fetch(100, 0.2)
            assert all(d.record is None for d in ds)  # bytes, as a broker carries them
            got += [d.value for d in ds]
            await events_in.ack(ds)
        await stage.stop()
        published[how] = sorted(got)
    assert len(published["worker"]) == len(raws) and published["worker"] == published["daemon"]
    assert {decode(Event, v).host for v in published["daemon"]} == {"ctl01"}


class SlowFirst(ParseStage):
    """Parses its first batch slowest, as a worker behind on it would: with two batches in hand at
    once (``handle_depth``), the second is parsed first."""

    slow = True

    async def _parse(self, raws):  # type: ignore[no-untyped-def]
        if self.slow:
            self.slow = False
            await asyncio.sleep(0.5)
        return await super()._parse(raws)


async def test_with_two_batches_in_hand_the_events_still_go_out_in_the_batches_order(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    events_in = await rt.bus.subscribe(["events"], "inspect")
    stage = SlowFirst(rt, parser=Parser.from_config(rt.settings.parse))
    stage.handle_depth, stage.batch_size, stage.batch_delay = 2, 10, 0
    await stage.start()
    raws = [RawLog(host="ctl01", path="/var/log/nova/nova-api.log", component="nova", type="openstack",
                   offset=i, inode=7, lines=[f"line {i}"]) for i in range(20)]
    await publish_records(rt.bus, raws[:10])
    await asyncio.sleep(0.1)  # the first batch is in hand; the second comes while it is parsed
    await publish_records(rt.bus, raws[10:])
    got: list[str] = []
    deadline = asyncio.get_running_loop().time() + 10
    while len(got) < 20 and asyncio.get_running_loop().time() < deadline:
        for d in await events_in.fetch(20, 0.2):
            got.append(d.record["message"] if d.record is not None else decode(Event, d.value).message)
            await events_in.ack([d])
    await stage.stop()
    assert got == [f"line {i}" for i in range(20)]


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "telemetry", "parse", *args], input=stdin,
                          capture_output=True, timeout=60)


def test_cli_parses_a_file_with_multiline(samples_dir: Path) -> None:
    res = run_cli("--type", "openstack", "--multiline", "python", str(samples_dir / "logs" / "nova-compute.log"))
    assert res.returncode == 0, res.stderr
    events = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert len(events) == 8
    assert events[5]["level"] == "ERROR" and "Traceback (most recent call last):" in events[5]["message"]
    assert events[0]["@timestamp"] == "2026-03-02T09:14:07.112000Z" and events[0]["component"] == "nova"


def test_cli_user_pattern_from_stdin_and_errors(tmp_path: Path) -> None:
    # in-process (click's runner) to keep the suite fast; the subprocess test above covers the real binary
    runner = CliRunner()
    res = runner.invoke(main, ["parse", "--pattern", "%{IP:client} %{WORD:[http][method]} %{NUMBER:bytes:int}", "-"],
                        input=b"55.3.244.1 GET 15824\nnot it\n")
    assert res.exit_code == 0, res.output
    ok, bad = (orjson.loads(line) for line in res.stdout_bytes.splitlines())
    assert ok["client"] == "55.3.244.1" and ok["http"] == {"method": "GET"} and ok["bytes"] == 15824
    assert bad["tags"] == ["_grokparsefailure"] and bad["message"] == "not it"
    (tmp_path / "p").write_text("MYWORD [a-z]+\n")
    res = run_cli("--patterns-dir", str(tmp_path), "-p", "%{MYWORD:w} %{MISSING:x}", "-", stdin=b"")
    assert res.returncode == 2 and b"undefined pattern %{MISSING}" in res.stderr
    res = runner.invoke(main, ["parse", "--type", "nope", "-"], input=b"")
    assert res.exit_code == 2


def test_cli_output_to_a_slow_pipe_keeps_every_event(tmp_path: Path) -> None:
    """Every line's event reaches a pipe whose reader is slow: the writes block, and the time budget's
    SIGALRM ticks interrupt them (CPython's buffered writer lost data there: 10-30% of a 100,000-line file)."""
    log = tmp_path / "big.log"
    n = 40_000  # above the progress bar's size, as the file that showed the loss
    with log.open("w") as f:
        for i in range(n):
            f.write(f"2026-03-02 09:14:07.{i % 1000:03d} 2931 INFO nova.compute.manager [req-{i:08d}-aaaa-bbbb-cccc-"
                    f"dddddddddddd - - - - -] [instance: 0b0f6a1e-2c3d-4e5f-8a9b-{i:012d}] line {i} "
                    + "x" * 80 + "\n")
    assert log.stat().st_size > 4 << 20
    # As on a terminal: the progress bar's path, the one that showed the loss.
    proc = subprocess.Popen([sys.executable, "-m", "telemetry", "parse", "-t", "openstack", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "TTY_COMPATIBLE": "1"})
    assert proc.stdout is not None
    import time

    got = bytearray()
    while chunk := proc.stdout.read(16 << 10):  # a slow reader: the pipe is full most of the time
        got += chunk
        time.sleep(0.002)
    assert proc.wait(60) == 0
    lines = got.splitlines()
    assert len(lines) == n
    assert orjson.loads(lines[-1])["message"].startswith(f"line {n - 1} ")
    # Standard error no terminal (a log, a pipe): no progress bar, and nothing written there.
    quiet = subprocess.run([sys.executable, "-m", "telemetry", "parse", "-t", "openstack", str(log)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "TTY_COMPATIBLE": "0"},
                           timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == b""


def test_cli_now_moves_every_event_of_a_file_so_the_newest_is_now(samples_dir: Path) -> None:
    """--now collects the events written a read at a time (many JSON lines a write) and re-dates them all."""
    from datetime import datetime, timezone

    res = run_cli("--type", "openstack", "--multiline", "python", "--now", str(samples_dir / "logs" / "nova-compute.log"))
    assert res.returncode == 0, res.stderr
    events = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert len(events) == 8
    newest = max(datetime.fromisoformat(e["@timestamp"].replace("Z", "+00:00")) for e in events)
    assert abs((datetime.now(timezone.utc) - newest).total_seconds()) < 60
