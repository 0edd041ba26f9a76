"""The file source on real files: how soon the last line ships, interleaved processes across a
restart, and what a rotation that cannot be recovered costs (counted, logged, never silent)."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import shutil
import time
from pathlib import Path

import pytest
from agent_support import InProcessAgent, settings

from telemetry.bus import MemoryBus
from telemetry.config import Settings
from telemetry.metrics import REGISTRY

REQ = ("[req-9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a 6f1c0a3b2e8d4d7c9b1a2f3e4d5c6b7a "
       "9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d - default default]")


def write(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))


def lost(reason: str) -> float:
    return REGISTRY.get_sample_value("telemetry_agent_data_lost_total", {"reason": reason}) or 0.0


def default_settings(tmp: Path) -> Settings:
    """The agent as shipped (poll, batch and flush timers at their defaults)."""
    return Settings.model_validate({
        "data_dir": str(tmp / "data"), "host": "node1",
        "sources": {"files": [{"paths": [str(tmp / "logs" / "*.log")],
                               "fields": {"type": "openstack", "component": "nova"}, "multiline": "python"}],
                    "host_metrics": {"enabled": False}},
    })


async def test_the_last_line_of_a_file_ships_within_a_second(tmp_path: Path) -> None:
    """An ERROR line at the end of a file is shipped at once, not after multiline_flush (2 s)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "nova-compute.log"
    head = "2026-03-02 09:16:40.005 31842 ERROR nova.compute.manager"
    write(log, f"2026-03-02 09:16:39.001 31842 INFO nova.compute.manager {REQ} Took 14.21 seconds to build.")
    s = default_settings(tmp_path)
    assert s.sources.agent.multiline_flush == 2.0 and s.sources.agent.batch_wait == 0.5
    async with InProcessAgent(s, MemoryBus()) as agent:
        await agent.collect(lambda got: len(got) == 1)
        for _ in range(3):
            traceback = [f"{head} {REQ} Instance failed to spawn", f"{head} Traceback (most recent call last):",
                         f'{head}   File "/usr/lib/python3/dist-packages/nova/compute/manager.py", line 2743',
                         f"{head}     yield resources", f"{head} libvirt.libvirtError: internal error", f"{head} "]
            alone = "2026-03-02 09:16:41.310 31842 ERROR nova.compute.manager [-] Instance 3f6c2b1e went to ERROR"
            for lines in (traceback, [alone]):
                n = len(agent.got)
                written = time.monotonic()
                write(log, *lines)
                got = await agent.collect(lambda got, n=n: len(got) == n + 1, timeout=3)
                took = time.monotonic() - written
                assert got[-1].lines == lines  # one entry, complete
                assert took < 1.0, f"the last entry of the file took {took:.2f}s to ship"


async def test_the_first_line_of_a_file_created_empty_ships_within_a_poll(tmp_path: Path) -> None:
    """A log file created empty (as services and logrotate's ``create`` do) is opened once its first
    line is complete, within poll_interval, not at the next scan of the globs (here 30 s later)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(3):
        (logs / f"new-{i}.log").touch()
    s = default_settings(tmp_path)
    s.sources.agent.scan_interval = 30.0
    assert s.sources.agent.poll_interval == 0.25
    async with InProcessAgent(s, MemoryBus()) as agent:
        took = []
        for i in range(3):
            await asyncio.sleep(0.3)  # the scan at start found them empty; the next is 30 s away
            written = time.monotonic()
            write(logs / f"new-{i}.log", f"2026-03-02 09:16:39.001 31842 INFO nova.compute.manager {REQ} line {i}")
            await agent.collect(lambda got, i=i: any(f"line {i}" in r.lines[0] for r in got), timeout=5)
            took.append(time.monotonic() - written)
        assert max(took) < 1.5, f"first lines took {took} s"


async def test_an_open_traceback_at_the_end_waits_for_its_rest(tmp_path: Path) -> None:
    """A traceback whose last line so far is a frame is not cut: its rest joins when it comes."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    head = "2026-03-02 09:16:40.005 31842 ERROR nova.compute.manager"
    first = [f"{head} {REQ} Instance failed to spawn", f"{head} Traceback (most recent call last):",
             f'{head}   File "/usr/lib/python3/dist-packages/nova/compute/manager.py", line 2743']
    rest = [f"{head}     yield resources", f"{head} libvirt.libvirtError: internal error", f"{head} "]
    s = settings(tmp_path, files=[{"paths": [str(log)], "multiline": "python"}], multiline_flush=3.0)
    async with InProcessAgent(s, MemoryBus()) as agent:
        write(log, *first)
        await asyncio.sleep(0.5)
        assert agent.got == [] and (await agent.consumer.fetch(10, timeout=0.2)) == []
        write(log, *rest)
        got = await agent.collect(lambda got: len(got) == 1, timeout=2)
    assert got[0].lines == first + rest


async def test_interleaved_processes_across_a_restart_ship_each_line_once(tmp_path: Path) -> None:
    """Worker 302 finishes its traceback while worker 301's is still open when the agent stops. The
    checkpoint stays at 301's first line and keeps 302's lines as shipped: after the restart 301's
    traceback comes out whole and 302's lines are not sent again."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "neutron-server.log"

    def line(pid: int, text: str, level: str = "ERROR") -> str:
        return f"2026-03-02 09:20:31.077 {pid} {level} neutron.plugins.ml2.managers {text}"

    a = [line(301, f"{REQ} Failed to bind port"), line(301, "Traceback (most recent call last):"),
         line(301, '  File "/usr/lib/python3/dist-packages/neutron/plugins/ml2/managers.py", line 808')]
    b = [line(302, f"{REQ} Failed to bind port"), line(302, "Traceback (most recent call last):"),
         line(302, '  File "/usr/lib/python3/dist-packages/neutron/plugins/ml2/managers.py", line 808'),
         line(302, "KeyError: 'segmentation_id'"), line(302, "")]
    b_next = line(302, f"{REQ} Port a1b2c3d4 bound", "INFO")
    write(log, a[0], a[1], b[0], b[1], a[2], b[2], b[3], b[4], b_next)
    s = settings(tmp_path, files=[{"paths": [str(log)], "multiline": "python"}], multiline_flush=60.0)
    async with InProcessAgent(s, MemoryBus()) as agent:
        first = await agent.collect(lambda got: len(got) == 2)
        await asyncio.sleep(0.3)  # 301's open traceback is not shipped
    assert [r.lines for r in first] == [b, [b_next]]
    a_rest = [line(301, "ValueError: bad vlan"), line(301, "")]
    a_next = line(301, f"{REQ} Retrying", "INFO")
    write(log, *a_rest, a_next)
    async with InProcessAgent(s, MemoryBus()) as agent:
        second = await agent.collect(lambda got: len(got) == 2)
        await asyncio.sleep(0.3)
        second = await agent.collect(lambda got: True)
    assert [r.lines for r in second] == [a + a_rest, [a_next]]
    assert len({r.id for r in first + second}) == 4


async def test_copytruncate_whose_copy_is_compressed_at_once_is_counted_as_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """logrotate's ``compress`` without ``delaycompress``: the copy is gzipped before we read it."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    write(log, *[f"first {i}" for i in range(5)])
    s = settings(tmp_path, files=[{"paths": [str(log)], "multiline": "none"}], poll_interval=0.5)
    before = lost("truncated_without_copy")
    with caplog.at_level(logging.WARNING, logger="telemetry.collect.files"):
        async with InProcessAgent(s, MemoryBus()) as agent:
            await agent.collect(lambda got: len(got) == 5)
            write(log, *[f"unread {i}" for i in range(3)])
            with log.open("rb") as src, gzip.open(logs / "app.log.1.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.truncate(log, 0)
            write(log, "after the rotation")
            got = await agent.collect(lambda got: any(r.lines == ["after the rotation"] for r in got))
    assert not any(r.lines[0].startswith("unread") for r in got)
    assert lost("truncated_without_copy") == before + 1
    assert any("was truncated and no copy" in r.getMessage() for r in caplog.records)


async def test_a_file_gone_before_a_restart_is_counted_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    write(log, "one", "two")
    s = settings(tmp_path, files=[{"paths": [str(log)], "multiline": "none"}])
    async with InProcessAgent(s, MemoryBus()) as agent:
        await agent.collect(lambda got: len(got) == 2)
    os.rename(log, logs / "app.log.1")  # rotated while the agent was down...
    with gzip.open(logs / "app.log.1.gz", "wb") as dst:
        dst.write((logs / "app.log.1").read_bytes())
    os.unlink(logs / "app.log.1")  # ...and compressed before it came back
    before = lost("gone_before_restart")
    with caplog.at_level(logging.WARNING, logger="telemetry.collect.files"):
        for _ in range(2):
            async with InProcessAgent(s, MemoryBus()):
                await asyncio.sleep(0.2)
    assert lost("gone_before_restart") == before + 1
    assert sum("is gone and no file holds its content" in r.getMessage() for r in caplog.records) == 1


async def test_a_file_renamed_while_the_agent_was_down_is_read_to_its_end(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    write(log, "one", "two")
    s = settings(tmp_path, files=[{"paths": [str(log)], "multiline": "none"}])
    async with InProcessAgent(s, MemoryBus()) as agent:
        await agent.collect(lambda got: len(got) == 2)
    write(log, "three")
    os.rename(log, logs / "app.log.1")  # outside the glob
    write(log, "new one")
    async with InProcessAgent(s, MemoryBus()) as agent:
        got = await agent.collect(lambda got: len(got) == 2)
        await asyncio.sleep(0.5)  # released, and nothing else
        files = agent.files
        assert list(files.readers) == [r for r in files.readers if files.readers[r].tail.path == str(log)]
    assert sorted(r.lines[0] for r in got) == ["new one", "three"]
