"""A durable test sink for ``telemetry server``: the stores are built on other branches.

It is a real BusStage: each batch is appended to a JSON-lines file and
fsynced before the stage acks, exactly the contract the stores keep, so a
kill -9 can lose nothing that was acked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import orjson

from telemetry.bus import Delivery
from telemetry.models import Notification, Record, Sample
from telemetry.stage import BusStage


class SinkStage(BusStage):
    name = "test.sink"
    topics: ClassVar[dict[str, type[Record]]] = {"samples": Sample, "notifications": Notification}
    group = "server"

    def __init__(self, runtime: Any) -> None:
        super().__init__(runtime)
        self.path = Path(runtime.data_dir) / f"sink-{os.getpid()}.jsonl"

    async def handle(self, records: list[tuple[Delivery, Record]]) -> None:
        lines = b"".join(
            orjson.dumps({"topic": d.topic, "id": r.message_id, "key": (d.key or b"").decode(),
                          "redelivered": d.redelivered}) + b"\n"
            for d, r in records
        )
        with open(self.path, "ab") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())


def sink_components(runtime: Any) -> list[SinkStage]:
    return [SinkStage(runtime)]


def read_sinks(folder: Path) -> list[dict]:
    out = []
    for p in folder.rglob("sink-*.jsonl"):
        out.extend(orjson.loads(line) for line in p.read_bytes().splitlines() if line.strip())
    return out
