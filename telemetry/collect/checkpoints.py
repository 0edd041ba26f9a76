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

Two files hold them, ``checkpoints.a`` and ``checkpoints.b``, each written in
place with one ``pwrite`` (a header with a sequence number, the length and a
checksum, then the JSON): a kill -9 cannot cut a ``pwrite``, so a killed agent
re-sends at most the batch in flight. Saving after every acknowledged batch
this way costs one system call; creating and renaming a file each time cost
a tenth of the agent's time. Flushing to the disk (fsync) happens at most
once per ``SYNC_EVERY`` second and on stop, and alternates: the file last
flushed is never written again until the other one has been flushed, so a
power loss leaves at least that one whole (a torn write fails its checksum and
the other file is read). An older checkpoint after a power loss means lines
re-sent (deduplicated downstream on their ids), never lines lost; Filebeat
flushes its registry on a timer for the same reason. A ``checkpoints.json``
of an older agent is read when neither file is there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from telemetry.fsutil import sync_folder

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


#: The two files written alternately (see the module's docstring).
SLOTS = ("checkpoints.a", "checkpoints.b")


def _blob(seq: int, body: bytes) -> bytes:
    digest = hashlib.blake2b(body, digest_size=8).hexdigest().encode()
    return b"%d %d %s\n" % (seq, len(body), digest) + body


def _unblob(data: bytes) -> tuple[int, bytes] | None:
    """The sequence number and body of a slot file; None for a torn or foreign one."""
    head, nl, rest = data.partition(b"\n")
    try:
        seq, size, digest = head.split(b" ")
        body = rest[: int(size)]
        if nl and len(body) == int(size) and hashlib.blake2b(body, digest_size=8).hexdigest().encode() == digest:
            return int(seq), body
    except ValueError:
        pass
    return None


class Checkpoints:
    """Acknowledged offsets per file fingerprint, and cursors per journal."""

    def __init__(self, folder: Path, ttl: float = 7 * 86400.0) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        self.items: dict[str, Checkpoint] = {}
        self.cursors: dict[str, str] = {}  # journal cursors, by source
        self._dirty = False
        self._synced = time.monotonic()  # when a file was last flushed
        self._unsynced = False  # the scratch file holds writes not yet flushed
        self._lock = threading.Lock()  # saves run in worker threads too; one at a time
        self._seq = 0
        self._stable = 0  # the slot last flushed; the other one is written
        self._fds: list[int | None] = [None, None]
        self._sizes = [0, 0]
        self._created = [False, False]  # created by us: the folder needs a flush too
        self._load()

    def _load(self) -> None:
        best: tuple[int, bytes, int] | None = None
        for i, name in enumerate(SLOTS):
            try:
                got = _unblob((self.folder / name).read_bytes())
            except FileNotFoundError:
                continue
            if got is None:
                log.warning("checkpoints %s is torn (a power loss while writing it); using the other file",
                            self.folder / name)
            elif best is None or got[0] > best[0]:
                best = (got[0], got[1], i)
        if best is not None:
            self._seq, body, newest = best
            # The newest may not have been flushed: writes go on in it, the other stays as it is.
            self._stable = 1 - newest
        else:
            try:
                body = (self.folder / "checkpoints.json").read_bytes()
            except FileNotFoundError:
                return
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:  # checksummed, so unlikely; never fatal
            log.error("checkpoints in %s unreadable (%s); files are read from their start", self.folder, exc)
            return
        for item in raw.get("files", []):
            item.setdefault("final", item["offset"])  # written before files were let go explicitly: done
            cp = Checkpoint(**item)
            cp.skips = [(a, b) for a, b in cp.skips]
            self.items[cp.fp] = cp
        self.cursors = dict(raw.get("cursors", {}))

    def _fd(self, slot: int) -> int:
        fd = self._fds[slot]
        if fd is None:
            path = self.folder / SLOTS[slot]
            self._created[slot] = not path.exists()
            fd = self._fds[slot] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
            self._sizes[slot] = os.fstat(fd).st_size
        return fd

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
            scratch = 1 - self._stable
            if self._dirty:
                self._dirty = False
                cutoff = time.time() - self.ttl
                self.items = {k: v for k, v in list(self.items.items()) if v.updated >= cutoff}
                body = orjson.dumps({"version": 1, "files": [_plain(v) for v in list(self.items.values())],
                                     "cursors": dict(self.cursors)})
                self._seq += 1
                blob = _blob(self._seq, body)
                try:
                    fd = self._fd(scratch)
                    os.pwrite(fd, blob, 0)
                    if len(blob) < self._sizes[scratch]:
                        os.ftruncate(fd, len(blob))
                    self._sizes[scratch] = len(blob)
                except OSError:
                    self._dirty = True  # try again with the next acknowledged batch
                    raise
                self._unsynced = True
            if sync and self._unsynced:
                os.fsync(self._fd(scratch))
                if self._created[scratch]:
                    sync_folder(self.folder)
                    self._created[scratch] = False
                self._stable, self._unsynced = scratch, False
            if sync:
                self._synced = time.monotonic()

    def close(self) -> None:
        for i, fd in enumerate(self._fds):
            if fd is not None:
                os.close(fd)
                self._fds[i] = None


def _plain(cp: Checkpoint) -> dict[str, object]:
    """``asdict`` written out: it runs for every file at every save."""
    return {"fp": cp.fp, "offset": cp.offset, "inode": cp.inode, "dev": cp.dev, "path": cp.path,
            "updated": cp.updated, "skips": cp.skips, "final": cp.final}
