"""A bounded on-disk queue of batches the bus could not take (``<data_dir>/spool``).

One file per batch, named by a sequence number, written atomically: a kill -9
leaves whole batches only, and a restart drains them in the order they were
written. The spool is bounded in bytes; when it is full, ``append`` waits
until draining frees room, which stalls the batcher and then the readers, so
lines wait in their files (backpressure) rather than being dropped.

The checkpoints of spooled lines do not advance until the bus takes them;
instead, on restart the readers start after what the spool already holds
(``positions``), so a line is neither lost nor spooled twice; a journal
resumes after the cursor the spool holds.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from telemetry.collect.batcher import Batch, Mark
from telemetry.fsutil import atomic_write

log = logging.getLogger(__name__)

__all__ = ["Spool"]


class Spool:
    def __init__(self, folder: Path, max_bytes: int, compression: str = "none") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.compression = compression
        for tmp in folder.glob("*.tmp"):  # a write cut short by a crash: never acknowledged, re-read
            tmp.unlink()
        self.files: list[Path] = sorted(folder.glob("*.batch"))
        self.bytes = sum(p.stat().st_size for p in self.files)
        self._seq = int(self.files[-1].stem) + 1 if self.files else 0
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self.files)

    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def positions(self) -> dict[str, Mark]:
        """Per source (file fingerprint, journal), the mark of the last spooled batch holding it.

        Batches are spooled in order and a source's marks only move forward, so the last is the furthest.
        """
        out: dict[str, Mark] = {}
        for path in self.files:
            try:
                batch = Batch.from_bytes(path.read_bytes())
            except Exception as exc:  # a corrupt spool file is reported, never fatal
                log.error("spool file %s unreadable: %s", path, exc)
                continue
            out.update(batch.marks)
        return out

    async def append(self, batch: Batch, wait: bool = True) -> None:
        """Write ``batch`` behind the others; waits while the spool is full, unless not ``wait``."""
        while wait and self.full():
            self._room.clear()
            await self._room.wait()
        data = batch.to_bytes(self.compression)
        path = self.folder / f"{self._seq:016d}.batch"
        self._seq += 1
        await asyncio.to_thread(atomic_write, path, data)
        self.files.append(path)
        self.bytes += len(data)

    def head(self) -> tuple[Path, Batch] | None:
        while self.files:
            path = self.files[0]
            try:
                return path, Batch.from_bytes(path.read_bytes())
            except Exception as exc:  # kept aside for the operator, not deleted
                log.error("spool file %s unreadable (%s); moved aside as .bad", path, exc)
                os.replace(path, path.with_suffix(".bad"))
                self.files.remove(path)
        return None

    def pop(self, path: Path) -> None:
        """The bus took the head batch: forget it."""
        self._remove(path)

    def _remove(self, path: Path) -> None:
        size = path.stat().st_size if path.exists() else 0
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.files.remove(path)
        self.bytes -= size
        if not self.full():
            self._room.set()
