"""Where each file was acknowledged up to, persisted under ``<data_dir>/agent/``.

A checkpoint moves only when the bus has acknowledged the batch holding the
lines before it, so a crash at any moment re-reads at most what was not yet
acknowledged, never skips a line. It is keyed by the file's fingerprint
(see ``tail``) and remembers the inode the content was first read from: a
copytruncate copy then yields the same record ids as the original would.

The file is replaced atomically (write, rename), so a kill -9 leaves either
the old or the new checkpoints, never half of them; it is rewritten after every
acknowledged batch, so a killed agent re-sends at most the batch in flight.
Flushing it to the disk (fsync of the file and the folder) happens at most once
per ``SYNC_EVERY`` second and on stop: it only matters for a power loss, and an
older checkpoint after one means lines re-sent (deduplicated downstream on
their ids), never lines lost. One fsync per batch was the agent's throughput
limit on a busy disk; Filebeat flushes its registry on a timer for the same
reason.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from telemetry.fsutil import atomic_write, sync_folder

log = logging.getLogger(__name__)

__all__ = ["Checkpoint", "Checkpoints"]


#: Seconds between flushes of the checkpoint file to the disk (see the module's docstring).
SYNC_EVERY = 1.0


@dataclass
class Checkpoint:
    fp: str
    offset: int
    inode: int
    dev: int
    path: str
    updated: float


class Checkpoints:
    """Acknowledged offsets per file fingerprint."""

    def __init__(self, folder: Path, ttl: float = 7 * 86400.0) -> None:
        self.path = folder / "checkpoints.json"
        folder.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        self.items: dict[str, Checkpoint] = {}
        self._dirty = False
        self._synced = time.monotonic()  # when the file on disk was last flushed
        self._unsynced = False  # the file holds writes not yet flushed
        self._lock = threading.Lock()  # saves run in worker threads; one at a time
        self._load()

    def _load(self) -> None:
        try:
            raw = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except orjson.JSONDecodeError as exc:  # atomic writes make this unlikely; never fatal
            log.error("checkpoints %s unreadable (%s); files are read from their start", self.path, exc)
            return
        for item in raw.get("files", []):
            cp = Checkpoint(**item)
            self.items[cp.fp] = cp

    def get(self, fp: str) -> Checkpoint | None:
        return self.items.get(fp)

    def advance(self, fp: str, offset: int, inode: int, dev: int, path: str) -> None:
        """Record that everything before ``offset`` was acknowledged (never moves back)."""
        cp = self.items.get(fp)
        if cp is not None and cp.offset >= offset:
            return
        self.items[fp] = Checkpoint(fp, offset, inode, dev, path, time.time())
        self._dirty = True

    def touch(self, fp: str) -> None:
        """The file is still there: keep its checkpoint alive."""
        cp = self.items.get(fp)
        if cp is not None and time.time() - cp.updated > self.ttl / 4:
            cp.updated = time.time()
            self._dirty = True

    def save(self, force_sync: bool = False) -> None:
        """Write what changed; flush it to the disk when due (``SYNC_EVERY``) or forced."""
        with self._lock:
            sync = force_sync or time.monotonic() - self._synced >= SYNC_EVERY
            if self._dirty:
                self._dirty = False
                cutoff = time.time() - self.ttl
                self.items = {k: v for k, v in list(self.items.items()) if v.updated >= cutoff}
                data = orjson.dumps({"version": 1, "files": [asdict(v) for v in list(self.items.values())]})
                try:
                    atomic_write(self.path, data, sync)
                except OSError:
                    self._dirty = True  # try again with the next acknowledged batch
                    raise
                self._unsynced = not sync
            elif sync and self._unsynced:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                sync_folder(self.path.parent)
                self._unsynced = False
            if sync:
                self._synced = time.monotonic()
