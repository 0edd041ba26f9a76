"""Bad input does not crash the agent or lose its neighbours; the bus going away loses nothing."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from agent_support import FlakyBus, InProcessAgent, settings, texts

from telemetry.bus import MemoryBus
from telemetry.collect.files import FilesSource
from telemetry.collect.tail import Tail


async def test_huge_line_binary_nul_and_invalid_utf8(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    with (logs / "mixed.log").open("wb") as f:
        f.write(b"before\n")
        f.write(b"x" * (10 << 20) + b"\n")  # a 10 MB line
        f.write(b"after huge\n")
        f.write(b"caf\xe9 latin-1\n")  # invalid UTF-8
        f.write(b"\0" * 4096)  # sparse padding of a copytruncate race
        f.write(b"with\0nul\n")
        f.write(b"last\n")
    (logs / "blob.log").write_bytes(os.urandom(256 << 10) + b"\nafter blob\n")
    s = settings(tmp_path, max_line_bytes=4096)
    async with InProcessAgent(s, MemoryBus()) as agent:
        got = await agent.collect(lambda got: any(r.lines == ["after blob"] for r in got)
                                  and any(r.lines == ["last"] for r in got), timeout=20)
    mixed = [r for r in got if r.path.endswith("mixed.log")]
    t = texts(mixed)
    assert t[0] == "before" and t[2:] == ["after huge", "caf\ufffd latin-1", "withnul", "last"], t[2:]
    assert len(t[1]) == 4096 and "truncated" in mixed[1].tags
    assert mixed[2].offset == 7 + (10 << 20) + 1  # offsets stay byte-exact past the cut
    assert "invalid_utf8" in mixed[3].tags and "nul_bytes" in mixed[4].tags
    blob = [r for r in got if r.path.endswith("blob.log")]
    assert blob[-1].lines == ["after blob"]
    assert all(len(r.text) <= 4096 for r in blob)


def test_long_line_is_never_held_whole(tmp_path: Path) -> None:
    p = tmp_path / "big.log"
    p.write_bytes(b"y" * (5 << 20) + b"\nnext\n")
    t = Tail.open(str(p), max_line=1000, read_bytes=64 << 10)
    assert t is not None
    lines = []
    peak = 0
    while True:
        before = t.pos
        lines += t.read()
        peak = max(peak, len(t._buf))
        if t.pos == before:
            break
    assert peak <= 1000
    assert [(x.text[:3], len(x.text), x.tags) for x in lines] == [("yyy", 1000, ["truncated"]), ("nex", 4, [])]


async def test_publish_that_never_returns_counts_as_down(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    bus = FlakyBus()
    bus.down = "hang"
    async with InProcessAgent(settings(tmp_path, publish_timeout=0.3), bus) as agent:
        (logs / "a.log").write_text("".join(f"x {i}\n" for i in range(20)))
        pipeline = agent.rt.agent
        await agent.collect(lambda got: len(pipeline.spool) >= 1, timeout=10)
        bus.down = False
        got = await agent.collect(lambda got: len(got) >= 20, timeout=10)
    assert texts(got) == [f"x {i}" for i in range(20)]


@pytest.mark.parametrize("outage", [True, "unconfirmed"])
async def test_bus_down_then_back_keeps_everything_in_order(tmp_path: Path, outage: bool | str) -> None:
    """A publish refused at once, or (Kafka) taken into the client's queue and never confirmed while
    later batches are under way: every line arrives once the bus is back, each file's in order."""
    logs = tmp_path / "logs"
    logs.mkdir()
    bus = FlakyBus()
    s = settings(tmp_path, batch_records=7, publish_timeout=1)
    async with InProcessAgent(s, bus) as agent:
        with (logs / "a.log").open("a") as a, (logs / "b.log").open("a") as b:
            for i in range(50):
                a.write(f"a {i}\n")
                b.write(f"b {i}\n")
        await agent.collect(lambda got: len(got) == 100)
        bus.down = outage
        with (logs / "a.log").open("a") as a, (logs / "b.log").open("a") as b:
            for i in range(50, 300):
                a.write(f"a {i}\n")
                b.write(f"b {i}\n")
        pipeline = agent.rt.agent
        await agent.collect(lambda got: len(pipeline.spool) >= 5, timeout=10)
        assert bus.refused and pipeline.shipper.down
        spooled = sorted((tmp_path / "data" / "spool").glob("*.batch"))
        assert spooled, "batches must be on disk while the bus is down"
        bus.down = False
        # The spooled file is removed once its batch is acknowledged and its checkpoint saved,
        # a moment after the records reached the bus.
        got = await agent.collect(lambda got: len(got) == 600 and len(pipeline.spool) == 0, timeout=20)
        assert len(got) == 600 and len(pipeline.spool) == 0
    for name in "ab":
        seq = [int(r.lines[0].split()[1]) for r in got if r.path.endswith(f"{name}.log")]
        assert seq == list(range(300)), seq


@pytest.mark.parametrize("refused_from", ["the first failed", "none failed yet"])
async def test_batches_refused_while_older_ones_wait_for_their_acks_queue_behind_them(tmp_path: Path,
                                                                                      refused_from: str) -> None:
    """Kafka's acks of the batches under way fail one by one, and meanwhile the broker refuses new batches
    at once: once the first of them failed (the shipper knows the bus is down), or before any did (it
    does not know yet). The refused batches go to the spool behind the older ones: each file keeps its
    order."""
    logs = tmp_path / "logs"
    logs.mkdir()
    bus = FlakyBus()
    first_failed = refused_from == "the first failed"
    bus.unconfirmed_after, bus.unconfirmed_step = (0.1, 0.03) if first_failed else (0.5, 0.0)
    async with InProcessAgent(settings(tmp_path, batch_records=5, publish_timeout=2), bus) as agent:
        pipeline = agent.rt.agent
        bus.down = "unconfirmed"
        with (logs / "a.log").open("a") as a:
            a.writelines(f"a {i}\n" for i in range(200))
        await agent.collect(lambda got: len(pipeline.spool) >= 1 if first_failed else bus.refused >= 20, timeout=10)
        bus.down = True  # refused at once from now on
        with (logs / "a.log").open("a") as a:
            a.writelines(f"a {i}\n" for i in range(200, 300))
        await agent.collect(lambda got: not pipeline.shipper.inflight and len(pipeline.spool) >= 40, timeout=10)
        bus.down = False
        got = await agent.collect(lambda got: len(got) >= 300 and len(pipeline.spool) == 0, timeout=20)
    seq = [int(r.lines[0].split()[1]) for r in got]
    assert seq == list(range(300)), seq


async def test_batches_under_way_that_fail_with_the_spool_full_go_to_it_anyway(tmp_path: Path) -> None:
    """A full spool holds back reading, not the batches already read: the ones whose acks never came go
    to the spool past its bound (a wait for room there would wait on the loop that drains it, forever),
    and everything arrives once the bus is back."""
    logs = tmp_path / "logs"
    logs.mkdir()
    bus = FlakyBus()
    s = settings(tmp_path, batch_records=10, publish_timeout=2, spool={"max_bytes": 65536})
    async with InProcessAgent(s, bus) as agent:
        pipeline = agent.rt.agent
        bus.down = "unconfirmed"
        with (logs / "a.log").open("a") as a:
            a.writelines(f"line {i:04d} " + "z" * 300 + "\n" for i in range(1000))
        await agent.collect(lambda got: pipeline.spool.full() and not pipeline.shipper.inflight, timeout=10)
        assert pipeline.spool.bytes > 2 * 65536  # past the bound: every batch that was under way
        bus.down = False
        got = await agent.collect(lambda got: len(got) >= 1000 and len(pipeline.spool) == 0, timeout=30)
    seq = [int(r.lines[0].split()[1]) for r in got]
    assert seq == list(range(1000)), (len(seq), seq[:5])


@pytest.mark.parametrize("compression", ["none", "gzip"])
async def test_spool_survives_restart_and_full_spool_pauses_reading(tmp_path: Path, compression: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    bus = FlakyBus()
    bus.down = True
    s = settings(tmp_path, batch_records=10, publish_timeout=1, spool={"max_bytes": 65536, "compression": compression})
    with (logs / "a.log").open("a") as a:
        for i in range(5000):
            a.write(f"line {i:05d} " + "z" * 80 + "\n")
    async with InProcessAgent(s, bus) as agent:
        pipeline = agent.rt.agent
        await agent.collect(lambda got: pipeline.spool.full(), timeout=10)
        files = next(c for c in agent.comps if isinstance(c, FilesSource))
        read_then = files.lines_read
        await asyncio.sleep(0.5)
        assert files.lines_read == read_then < 5000, "reading must pause while the spool is full"
        assert pipeline.spool.bytes <= 65536 + 8192
    # restart with the bus back: the spool drains first, then reading resumes; nothing twice
    bus2 = MemoryBus()
    async with InProcessAgent(s, bus2) as agent:
        got = await agent.collect(lambda got: len(got) >= 5000, timeout=30)
        await asyncio.sleep(0.3)
        got = await agent.collect(lambda got: True)
    seq = [int(r.lines[0].split()[1]) for r in got]
    assert seq == list(range(5000)), (len(seq), seq[:5])


def _read_all(path: Path, read_bytes: int, careful: bool, monkeypatch: pytest.MonkeyPatch) -> list:
    with monkeypatch.context() as mp:
        if careful:
            mp.setattr(Tail, "_bulk", lambda *a: False)
        t = Tail.open(str(path), max_line=64, read_bytes=read_bytes)
        assert t is not None
        out = []
        while True:
            before = t.pos
            out += [(x.text, x.offset, x.end, x.tags) for x in t.read()]
            if t.pos == before:
                break
        rest = t.rest()
        t.close()
    return out + ([(rest.text, rest.offset, rest.end, rest.tags)] if rest else [])


@pytest.mark.parametrize("read_bytes", [1, 7, 100, 4096, 1 << 20])
def test_bulk_split_gives_the_careful_lines(tmp_path: Path, read_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    rng = random.Random(read_bytes)
    pieces = [b"first line\n"]
    shapes = [b"plain ascii %d", "caf\u00e9 \u2713 %d".encode(), b"crlf %d\r", b"bad \xe9 %d", b"nul\0 %d",
              b"\0\0\0", b"", b"long " + b"z" * 100 + b" %d", ("\u00e9" * 40 + " %d").encode()]
    for i in range(400):
        shape = rng.choices(shapes, weights=[60, 10, 1, 1, 1, 1, 2, 1, 5])[0]  # mostly clean: both paths run
        pieces.append((shape % i if b"%d" in shape else shape) + b"\n")
    p = tmp_path / "mixed.log"
    p.write_bytes(b"".join(pieces) + b"unterminated tail")
    careful = _read_all(p, read_bytes, True, monkeypatch)
    assert _read_all(p, read_bytes, False, monkeypatch) == careful
    assert len(careful) > 350 and careful[-1][0] == "unterminated tail"
