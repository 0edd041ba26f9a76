"""Where each source was acknowledged up to, persisted under ``<data_dir>/agent/``.

A checkpoint moves only when the bus has acknowledged the batch holding the
lines before it, so a crash at any moment re-reads at most what was not yet
acknowledged, never skips a line. A file's is keyed by its fingerprint (see
``tail``) and remembers the inode the content was first read from: a
copytruncate copy then yields the same record ids as the original would. It
also keeps the lines past its offset that were shipped already (``skips``:
another process's traceback finished first, see ``multiline``), and, once the
file was read to its end and let go, that end (``final``): a file whose
checkpoint has not reached its ``final`` is looked for again after a restart,
under whatever name it has by then. A journal's checkpoint is its cursor.

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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
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
    #: Line ranges past ``offset`` already shipped, skipped when the file is read again from ``offset``.
    skips: list[tuple[int, int]] = field(default_factory=list)
    #: Set when the agent let go of the file: the checkpoint it waits for. None: still being read.
    final: int | None = None

    @property
    def done(self) -> bool:
        """The file was read to its end, and all of it acknowledged."""
        return self.final is not None and self.offset >= self.final


class Checkpoints:
    """Acknowledged offsets per file fingerprint."""

    def __init__(self, folder: Path, ttl: float = 7 * 86400.0) -> None:
        self.path = folder / "checkpoints.json"
        folder.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        self.items: dict[str, Checkpoint] = {}
        self.cursors: dict[str, str] = {}  # journal cursors, by source
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
            item.setdefault("final", item["offset"])  # written before files were let go explicitly: done
            cp = Checkpoint(**item)
            cp.skips = [(a, b) for a, b in cp.skips]
            self.items[cp.fp] = cp
        self.cursors = dict(raw.get("cursors", {}))

    def get(self, fp: str) -> Checkpoint | None:
        return self.items.get(fp)

    def advance(
        self, fp: str, offset: int, inode: int, dev: int, path: str, skips: Sequence[tuple[int, int]] = (),
    ) -> None:
        """Record that everything before ``offset``, and the ``skips`` past it, was acknowledged.

        Never moves back; at the same offset, later marks only add skips.
        """
        cp = self.items.get(fp)
        if cp is not None and (cp.offset > offset or (cp.offset == offset and len(cp.skips) >= len(skips))):
            return
        self.items[fp] = Checkpoint(fp, offset, inode, dev, path, time.time(), list(skips),
                                    cp.final if cp is not None else None)
        self._dirty = True

    def release(self, fp: str, final: int) -> None:
        """The agent let go of the file: it is done once the checkpoint reaches ``final``."""
        cp = self.items.get(fp)
        if cp is not None and cp.final != final:
            cp.final = final
            cp.updated = time.time()
            self._dirty = True

    def unfinished(self) -> list[Checkpoint]:
        """Files let go of before their end was acknowledged (or still being read when the agent stopped)."""
        return [cp for cp in self.items.values() if not cp.done]

    def advance_cursor(self, key: str, cursor: str) -> None:
        """A journal source's entries up to ``cursor`` were acknowledged."""
        if self.cursors.get(key) != cursor:
            self.cursors[key] = cursor
            self._dirty = True

    def touch(self, fp: str) -> None:
        """The file is still there: keep its checkpoint alive."""
        cp = self.items.get(fp)
        if cp is not None and time.time() - cp.updated > self.ttl / 4:
            cp.updated = time.time()
            self._dirty = True

    def sync_due(self) -> bool:
        """The next ``save`` flushes to the disk (slow: callers run that one in a thread)."""
        return time.monotonic() - self._synced >= SYNC_EVERY

    def save(self, force_sync: bool = False) -> None:
        """Write what changed; flush it to the disk when due (``SYNC_EVERY``) or forced."""
        with self._lock:
            sync = force_sync or time.monotonic() - self._synced >= SYNC_EVERY
            if self._dirty:
                self._dirty = False
                cutoff = time.time() - self.ttl
                self.items = {k: v for k, v in list(self.items.items()) if v.updated >= cutoff}
                data = orjson.dumps({"version": 1, "files": [asdict(v) for v in list(self.items.values())],
                                     "cursors": dict(self.cursors)})
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
