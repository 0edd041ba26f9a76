"""kill -9 the real agent process at random moments while a writer appends and rotates.

The downstream must outlive the agent. Two downstreams, both real: the local
RabbitMQ through our AMQP bus (``publish`` returns on the publisher confirm,
and only then does the checkpoint move), and the agent's fsynced JSON-lines
output (``sources.agent.output_file``, Filebeat's ``output.file``). After all
the kills, every line written is in exactly one record id downstream (the
server dedups redelivery on the id), and the agent never shipped a line under
two different ids.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import asyncio

import pytest
from agent_support import read_jsonl
from busenv import amqp_url  # noqa: F401 (fixture)

from telemetry.bus import open_bus
from telemetry.config.core import BusConfig
from telemetry.models import RawLog


class AmqpDownstream:
    """Every RawLog the agent published, read by our own consumer group on the real broker."""

    def __init__(self, url: str, prefix: str) -> None:
        self.config = BusConfig(url=url, topic_prefix=prefix)
        self.records: list[dict] = []
        asyncio.run(self._drain())  # declares the audit queue before the agent publishes

    async def _drain(self) -> None:
        bus = open_bus(self.config)
        await bus.start()
        try:
            consumer = await bus.subscribe(["raw_logs"], "audit")
            while batch := await consumer.fetch(1000, timeout=0.5):
                self.records += [RawLog.from_json(d.value).to_dict() for d in batch]
                await consumer.ack(batch)
            await consumer.close()
        finally:
            await bus.close()

    def read(self) -> list[dict]:
        asyncio.run(self._drain())
        return self.records


class Writer(threading.Thread):
    """An oslo-style service log: INFO lines, now and then a Kilo TRACE traceback, rotated."""

    def __init__(self, logs: Path, mode: str, total: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.logs, self.mode, self.total = logs, mode, total
        self.rng = random.Random(seed)
        self.written: list[str] = []
        self.rotations = 0
        self.ts = datetime(2026, 3, 2, 9, 0, 0)
        #: Set once the agent was killed often enough: the last lines wait for it, so a fast machine
        #: (or a run of long random intervals between kills) cannot finish the file before that.
        self.may_finish = threading.Event()

    def line(self, level: str, text: str) -> str:
        return f"{self.ts:%Y-%m-%d %H:%M:%S.%f} 4242 {level} nova.compute.manager {text}"

    def rotate(self, f):  # type: ignore[no-untyped-def]
        self.rotations += 1
        cur, old = self.logs / "app.log", self.logs / f"app.log.{self.rotations:03d}"
        if self.mode == "rename":
            f.close()
            os.rename(cur, old)
            return open(cur, "a")
        f.flush()
        shutil.copyfile(cur, old)
        os.truncate(cur, 0)
        return f

    def run(self) -> None:
        f = open(self.logs / "app.log", "a")
        n = 0
        while n < self.total:
            if n >= self.total - 10:
                self.may_finish.wait(timeout=60)
            self.ts += timedelta(milliseconds=1)
            group = [self.line("INFO", f"[-] seq {n:06d} " + "p" * self.rng.randint(0, 200))]
            n += 1
            if self.rng.random() < 0.05:  # a traceback joined into the line that raised
                for k in range(3):
                    group.append(self.line("TRACE", f"seq {n:06d} frame {k}"))
                    n += 1
            for g in group:
                f.write(g + "\n")
            self.written += group
            f.flush()
            if self.rng.random() < 0.004:
                f = self.rotate(f)
            time.sleep(0.0008)
        f.close()


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "downstream"), [("rename", "file"), ("copytruncate", "file"),
                                                  ("rename", "amqp"), ("copytruncate", "amqp")])
def test_kill9_while_writing_and_rotating_loses_and_repeats_nothing(
    daemon_factory, tmp_path, mode, downstream, request
) -> None:
    seed = int(time.time())
    rng = random.Random(seed)
    out = tmp_path / "downstream.jsonl"
    logs = tmp_path / "d0" / "logs"
    logs.mkdir(parents=True)
    agent_cfg = {"batch_records": 50, "batch_wait": "0.05s", "poll_interval": "0.02s", "scan_interval": "0.1s",
                 "multiline_flush": "0.3s"}
    cfg: dict = {
        "sources": {
            "files": [{"paths": [str(logs / "app.log*")], "fields": {"type": "openstack", "component": "nova"},
                       "multiline": "python"}],
            "host_metrics": {"enabled": False},
            "agent": agent_cfg,
        },
    }
    if downstream == "file":
        agent_cfg["output_file"] = str(out)

        def read_downstream() -> list[dict]:
            return read_jsonl(out)
    else:
        amqp = AmqpDownstream(request.getfixturevalue("amqp_url"), f"crash-{mode}-{seed}.")
        cfg["bus"] = {"url": amqp.config.url, "topic_prefix": amqp.config.topic_prefix}
        read_downstream = amqp.read
    agent = daemon_factory("agent", cfg, sub="d0")
    writer = Writer(logs, mode, total=4000, seed=seed)
    writer.start()
    kills = 0
    while writer.is_alive():
        agent.start(wait=False)
        time.sleep(rng.uniform(0.4, 1.6))
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait()
        agent.log.close()
        kills += 1
        if kills >= 3:
            writer.may_finish.set()
    writer.join()
    assert kills >= 3 and writer.rotations >= 2, (kills, writer.rotations)

    agent.start(wait=False)
    want = set(writer.written)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = {line for r in read_downstream() for line in r["lines"]}
        if want <= seen:
            break
        time.sleep(0.3)
    time.sleep(1.0)  # anything shipped late would show up as a repeat
    assert agent.stop(signal.SIGTERM) == 0
    records = read_downstream()
    ids_of: dict[str, set[str]] = defaultdict(set)
    for r in records:
        for line in r["lines"]:
            ids_of[line].add(r["id"])
    missing = want - ids_of.keys()
    assert not missing, f"seed {seed}: {len(missing)} lines lost, e.g. {sorted(missing)[:3]}"
    twice = {line: ids for line, ids in ids_of.items() if len(ids) > 1}
    assert not twice, f"seed {seed}: lines under several ids: {list(twice.items())[:3]}"
    assert not ids_of.keys() - want, f"seed {seed}: lines nobody wrote: {sorted(ids_of.keys() - want)[:3]}"
    resent = len(records) - len({r["id"] for r in records})
    # Redelivery (same id) only for batches in flight at a kill: at most one batch per kill.
    assert resent <= kills * 50, (resent, kills)
    print(f"mode={mode} downstream={downstream} seed={seed} kills={kills} rotations={writer.rotations} "
          f"lines={len(want)} records={len(records)} redelivered={resent}")
