"""The file source on real files: rotation, truncation, deletion, symlinks, multiline, new files."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from agent_support import InProcessAgent, settings, texts

from telemetry.bus import MemoryBus
from telemetry.collect.files import FilesSource


def write(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        for line in lines:
            f.write(line + "\n")


async def test_reads_new_files_and_appends(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "a.log", "a1", "a2")
    async with InProcessAgent(settings(tmp_path), MemoryBus()) as agent:
        await agent.collect(lambda got: len(got) == 2)
        write(logs / "b.log", "b1")  # created while running
        write(logs / "a.log", "a3")
        got = await agent.collect(lambda got: len(got) == 4)
    assert sorted(texts(got)) == ["a1", "a2", "a3", "b1"]
    r = got[0]
    assert (r.host, r.type, r.component, r.offset) == ("node1", "openstack", "nova", 0)
    assert r.inode == os.stat(logs / "a.log").st_ino
    assert [x.offset for x in got if x.path.endswith("a.log")] == [0, 3, 6]


async def test_rename_rotation_reads_old_file_to_end(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    cur = logs / "app.log"
    write(cur, "one")
    s = settings(tmp_path, files=[{"paths": [str(cur)], "multiline": "none"}])  # the rotated name is NOT globbed
    async with InProcessAgent(s, MemoryBus()) as agent:
        await agent.collect(lambda got: len(got) == 1)
        write(cur, "two")
        os.rename(cur, logs / "app.log.1")
        write(logs / "app.log.1", "three")  # the service still writes to its old descriptor
        write(cur, "four")
        got = await agent.collect(lambda got: len(got) == 4)
    assert texts(got)[:1] == ["one"] and sorted(texts(got)) == ["four", "one", "three", "two"]


async def test_copytruncate_continues_in_copy_without_repeats(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    cur = logs / "app.log"
    write(cur, *[f"line {i}" for i in range(100)])
    async with InProcessAgent(settings(tmp_path), MemoryBus()) as agent:
        await agent.collect(lambda got: len(got) == 100)
        write(cur, *[f"late {i}" for i in range(5)])
        shutil.copyfile(cur, logs / "app.log.1")
        os.truncate(cur, 0)
        write(cur, "fresh 0", "fresh 1")
        got = await agent.collect(lambda got: len(got) >= 107)
        await asyncio.sleep(0.5)  # anything repeated would arrive now
        got = await agent.collect(lambda got: True)
    t = texts(got)
    assert len(t) == len(set(t)) == 107, sorted(t)
    assert {r.id for r in got}.__len__() == 107


async def test_truncation_rereads_from_start(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    cur = logs / "app.log"
    write(cur, "first generation line", "second")
    s = settings(tmp_path, files=[{"paths": [str(cur)], "multiline": "none"}])
    async with InProcessAgent(s, MemoryBus()) as agent:
        await agent.collect(lambda got: len(got) == 2)
        with cur.open("w") as f:  # truncate in place (> file), same inode
            f.write("new\n")
        got = await agent.collect(lambda got: len(got) == 3)
    assert texts(got)[2] == "new"
    assert got[2].offset == 0 and got[2].id != got[0].id  # same inode and offset, new content: new id


async def test_deleted_file_is_released_and_symlink_followed(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    real = tmp_path / "elsewhere.txt"
    write(real, "via link")
    os.symlink(real, logs / "linked.log")
    write(logs / "gone.log", "bye")
    async with InProcessAgent(settings(tmp_path), MemoryBus()) as agent:
        await agent.collect(lambda got: len(got) == 2)
        files = next(c for c in agent.comps if isinstance(c, FilesSource))
        assert len(files.readers) == 2
        os.unlink(logs / "gone.log")
        await agent.collect(lambda got: len(files.readers) == 1, timeout=5)
    assert sorted(texts(agent.got)) == ["bye", "via link"]


async def test_python_multiline_and_the_last_entry(tmp_path: Path, samples_dir: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copyfile(samples_dir / "logs" / "nova-compute.log", logs / "nova-compute.log")
    files = [{"paths": [str(logs / "*.log")], "fields": {"type": "openstack", "component": "nova"},
              "multiline": "python", "tags": ["compute"]}]
    async with InProcessAgent(settings(tmp_path, files=files), MemoryBus()) as agent:
        # 8 entries: the last one ships at the end of the file, complete, without waiting for a next line
        got = await agent.collect(lambda got: len(got) == 8, timeout=5)
    tb = [r for r in got if any("Traceback" in line for line in r.lines)]
    assert len(tb) == 1 and len(tb[0].lines) > 3
    assert all(r.tags == ["compute"] for r in got)
    assert [r.offset for r in got] == sorted(r.offset for r in got)


async def test_checkpoint_resumes_after_restart(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "a.log", "a1", "a2")
    async with InProcessAgent(settings(tmp_path), MemoryBus()) as agent:
        await agent.collect(lambda got: len(got) == 2)
    write(logs / "a.log", "a3")
    async with InProcessAgent(settings(tmp_path), MemoryBus()) as agent:
        got = await agent.collect(lambda got: len(got) >= 1)
        await asyncio.sleep(0.3)
        got = await agent.collect(lambda got: True)
    assert texts(got) == ["a3"]


def test_record_ids_are_derived_from_what_identifies_the_content(tmp_path: Path) -> None:
    """Same host, inode, fingerprint and offset: the same id (a re-read is a repeat); any of them
    different: another id."""
    from telemetry.collect.reader import FileReader
    from telemetry.collect.tail import Tail
    from telemetry.config.sources import AgentConfig, FileSource

    (tmp_path / "a.log").write_text("first\n")
    (tmp_path / "b.log").write_text("other first line\n")
    group = FileSource(paths=[str(tmp_path / "*.log")])

    def ids(name: str, inode: int, host: str) -> list[str]:
        tail = Tail.open(str(tmp_path / name), 1000)
        assert tail is not None
        reader = FileReader(tail, group, inode, AgentConfig(), host)
        tail.close()
        return [reader.record_id(offset) for offset in (0, 6, 123456789)]

    a = ids("a.log", 1 << 40, "node1")
    assert a == ids("a.log", 1 << 40, "node1") and len(set(a)) == 3
    for other in (ids("b.log", 1 << 40, "node1"), ids("a.log", 7, "node1"), ids("a.log", 1 << 40, "node2")):
        assert not set(other) & set(a)


def test_a_reader_hands_the_same_records_as_objects_as_it_encodes(tmp_path: Path) -> None:
    """The all-in-one takes RawLog objects (``records``), everything else their JSON (``encoded``):
    the two must be the same records, tags and extra fields included."""
    from telemetry.collect.reader import FileReader
    from telemetry.collect.multiline import Entry
    from telemetry.collect.tail import Tail
    from telemetry.config.sources import AgentConfig, FileSource
    from telemetry.models import RawLog, decode

    (tmp_path / "a.log").write_text("first\n")
    group = FileSource(paths=[str(tmp_path / "*.log")], tags=["compute"],
                       fields={"type": "openstack", "component": "nova", "region": "r1"})
    tail = Tail.open(str(tmp_path / "a.log"), 1000)
    assert tail is not None
    reader = FileReader(tail, group, 42, AgentConfig(), "node1")
    tail.close()
    entries = [Entry(["one"], 0, 4), Entry(["two", "  more"], 4, 16, tags=["truncated"])]
    objects = reader.records(entries)
    from_json = [decode(RawLog, v) for v in reader.encoded(entries)]
    for o, j in zip(objects, from_json, strict=True):
        assert isinstance(o, RawLog)
        assert o.model_dump(exclude={"read_at"}) == j.model_dump(exclude={"read_at"})
        assert abs((o.read_at - j.read_at).total_seconds()) < 5
    assert objects[1].tags == ["compute", "truncated"] and objects[0].model_extra == {"region": "r1"}


def test_checkpoints_written_every_save_flushed_on_a_timer(tmp_path: Path, monkeypatch) -> None:
    """Every save replaces the file (a kill -9 loses nothing acknowledged); fsync at most once a second."""
    from telemetry.collect import checkpoints as cpmod

    syncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(cpmod.os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd)))
    cps = cpmod.Checkpoints(tmp_path)
    for offset in (10, 20, 30):
        cps.advance("fp1", offset, 7, 1, "/a.log")
        cps.save()
        assert cpmod.Checkpoints(tmp_path).get("fp1").offset == offset  # what a restarted agent reads
    assert syncs == []  # within SYNC_EVERY of the start: written, not yet flushed
    cps._synced -= cpmod.SYNC_EVERY
    cps.save()  # nothing new, but due: the last write is flushed (file and folder)
    assert len(syncs) == 2
    cps.advance("fp1", 40, 7, 1, "/a.log")
    cps.save(force_sync=True)  # on stop
    assert len(syncs) == 4 and cpmod.Checkpoints(tmp_path).get("fp1").offset == 40


def test_rewrite_past_the_read_position_is_not_read_as_the_old_file(tmp_path: Path) -> None:
    """copytruncate while the agent lags: the file is truncated and written again beyond where
    we were. Those bytes are new content; reading them as the old file would ship them under the
    old file's ids (and from mid-line), then again under the new file's."""
    from telemetry.collect.tail import Tail

    path = tmp_path / "app.log"
    path.write_text("old first line\n" + "old line\n" * 3)
    tail = Tail.open(str(path), 1 << 20)
    assert tail is not None
    assert len(tail.read_lines().texts) == 4
    pos = tail.pos
    shutil.copyfile(path, tmp_path / "app.log.1")
    with path.open("r+") as f:  # truncate, then grow past the old position with new lines
        f.truncate(0)
        f.write("new first line\n" + "new line\n" * 20)
    assert path.stat().st_size > pos
    assert len(tail.read_lines().texts) == 0
    assert tail.pos == pos and tail.truncated()
    tail.close()


async def test_records_are_encoded_as_the_model_encodes_them(tmp_path: Path) -> None:
    """The agent writes each record's JSON itself (once, on its hot path): byte for byte what the
    validated RawLog gives, extra fields, tags and repaired lines included."""
    import orjson

    from telemetry.models import RawLog

    logs = tmp_path / "logs"
    logs.mkdir()
    with (logs / "a.log").open("wb") as f:
        f.write(b"plain\ncaf\xe9\nwith\0nul\n")
    files = [{"paths": [str(logs / "*.log")], "fields": {"type": "openstack", "component": "nova", "region": "r1"},
              "tags": ["compute"], "multiline": "none"}]
    bus = MemoryBus()
    consumer = await bus.subscribe(["raw_logs"], "bytes")
    async with InProcessAgent(settings(tmp_path, files=files), bus) as agent:
        await agent.collect(lambda got: len(got) == 3)
    values = [d.value for d in await consumer.fetch(10, timeout=1)]
    assert len(values) == 3
    for v in values:
        assert RawLog.model_validate(orjson.loads(v)).to_json() == v
    assert [orjson.loads(v)["tags"] for v in values] == [["compute"], ["compute", "invalid_utf8"],
                                                         ["compute", "nul_bytes"]]
    assert all(orjson.loads(v)["region"] == "r1" for v in values)


def test_checkpoint_files_survive_a_torn_write(tmp_path: Path) -> None:
    """The file last flushed is not written again until the other one is flushed; a torn write
    (power loss) fails its checksum and the other file is read; an older agent's file is read."""
    import orjson

    from telemetry.collect import checkpoints as cpmod

    (tmp_path / "checkpoints.json").write_bytes(orjson.dumps({"version": 1, "files": [
        {"fp": "old", "offset": 5, "inode": 1, "dev": 1, "path": "/a.log", "updated": 4e9}]}))
    cps = cpmod.Checkpoints(tmp_path)
    assert cps.get("old").offset == 5 and cps.get("old").done  # an older agent's file, read once
    cps.advance("fp1", 10, 7, 1, "/a.log")
    cps.save(force_sync=True)
    stable = [p for p in cpmod.SLOTS if (tmp_path / p).exists()]
    assert len(stable) == 1
    flushed = (tmp_path / stable[0]).read_bytes()
    for offset in (20, 30):
        cps.advance("fp1", offset, 7, 1, "/a.log")
        cps.save()
    assert (tmp_path / stable[0]).read_bytes() == flushed  # untouched until the other is flushed
    assert cpmod.Checkpoints(tmp_path).get("fp1").offset == 30
    scratch = next(p for p in cpmod.SLOTS if p != stable[0])
    data = (tmp_path / scratch).read_bytes()
    (tmp_path / scratch).write_bytes(data[: len(data) // 2])  # torn by a power loss
    assert cpmod.Checkpoints(tmp_path).get("fp1").offset == 10
    cps.close()


def test_messages_are_the_bus_messages_their_constructor_builds() -> None:
    from telemetry.bus import OutMessage
    from telemetry.collect.ship import messages

    built = messages([b'{"a":1}', b'{"b":2}'], [b"node1", b"node2"])
    assert built == [OutMessage(b'{"a":1}', b"node1"), OutMessage(b'{"b":2}', b"node2")]
    assert all(type(m) is OutMessage and m.headers == {} for m in built)


async def test_a_msgpack_bus_gets_the_records_msgpack_encodes() -> None:
    """The agent encodes JSON once; on a bus configured for msgpack each record is re-packed, as
    ``RawLog.to_msgpack`` would pack it."""
    from telemetry.collect.batcher import Batch
    from telemetry.collect.ship import BusTarget
    from telemetry.models import RawLog, decode

    rec = RawLog(id="abc-1", host="node1", path="/var/log/nova/nova-compute.log", component="nova",
                 type="openstack", offset=0, inode=7, lines=["one", "two"], tags=["compute"])
    bus = MemoryBus()
    consumer = await bus.subscribe(["raw_logs"], "packed")
    await BusTarget(bus, "msgpack").ship(Batch(values=[rec.to_json()], keys=[b"node1"]))
    [delivery] = await consumer.fetch(10, timeout=1)
    assert delivery.value == rec.to_msgpack() and delivery.key == b"node1"
    assert decode(RawLog, delivery.value) == rec


async def test_checkpoints_wait_until_the_batch_is_durable_downstream(tmp_path: Path) -> None:
    """In the all-in-one the memory bus holds a batch only in memory: the file's checkpoint moves
    once the stage downstream acknowledged it (after its own durable write), not when published."""
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "a.log", "one", "two")
    bus = MemoryBus()
    stage = await bus.subscribe(["raw_logs"], "parse", writes_durably=True)
    async with InProcessAgent(settings(tmp_path), bus) as agent:
        await agent.collect(lambda got: len(got) == 2)  # an observer saw them
        cps = agent.rt.agent.checkpoints
        await asyncio.sleep(0.3)
        assert [cp.offset for cp in cps.items.values()] == [0]  # published, not yet written downstream
        ds = await stage.fetch(10, timeout=1)
        assert len(ds) == 2
        await stage.ack(ds)
        for _ in range(50):
            if [cp.offset for cp in cps.items.values()] == [8]:
                break
            await asyncio.sleep(0.05)
        assert [cp.offset for cp in cps.items.values()] == [8]


@pytest.mark.parametrize(("mode", "workers", "objects"), [("run", 1, True), ("run", 0, True), ("agent", 1, False),
                                                          ("agent", 0, False)])
def test_only_the_all_in_one_hands_its_parse_stage_objects(tmp_path: Path, mode: str, workers: int,
                                                             objects: bool) -> None:
    """Objects where a parse stage in this process reads them (parsing itself or sending their values to
    its workers); an agent builds the JSON template, cheaper than a RawLog, even on an in-process bus."""
    from telemetry.config import Settings
    from telemetry.runtime import Runtime
    from telemetry.wiring import agent_components

    s = Settings.model_validate({"data_dir": str(tmp_path), "host": "h", "parse": {"workers": workers},
                                 "sources": {"files": [{"paths": [str(tmp_path / "*.log")]}],
                                             "host_metrics": {"enabled": False}}})
    rt = Runtime(settings=s, mode=mode, bus=MemoryBus(), data_dir=s.data_dir)
    agent_components(rt)
    assert rt.agent is not None and rt.agent.batcher.objects is objects
