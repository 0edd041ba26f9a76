"""The file source: globs from ``sources.files``, tailed, joined, batched, shipped.

Files are tracked by content fingerprint (see ``tail``). A scan every
``scan_interval`` re-expands the globs, so files created while running are
picked up; a file whose fingerprint is already being read (a copytruncate
copy, a second glob matching it) is left alone until that reader needs it.
A reader keeps its descriptor across a rename and reads to the end before it
lets go of a file that was deleted or rotated out of the globs; a truncated
file continues in its copy when there is one, and is re-read from its start.

Record ids derive from host + inode + offset + fingerprint: the inode is the
one the content was first read from (kept in the checkpoint, so the copy of a
rotated file yields the same ids), and the fingerprint keeps the new content
of a truncated or reused inode from colliding with the old.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import time
from fnmatch import fnmatch
from typing import Any

from telemetry.collect import agent_metrics as m
from telemetry.collect.batcher import Batcher, Mark
from telemetry.collect.checkpoints import Checkpoints
from telemetry.collect.multiline import Entry, Joiner, make_joiner
from telemetry.collect.tail import Line, Lines, Tail, fingerprint, stat_key
from telemetry.component import Component
from telemetry.config.sources import AgentConfig, FileSource
from telemetry.models import RawLog, id_of_key
from telemetry.timeutil import utcnow
from telemetry.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["FileReader", "FilesSource"]




class FileReader:
    """One file's content: its tail, its joiner, the group's fields."""

    def __init__(self, tail: Tail, group: FileSource, inode: int, cfg: AgentConfig, host: str = "") -> None:
        self.tail = tail
        self.group = group
        self.inode = inode  # the inode record ids use (the original's, for a copy)
        self.joiner: Joiner = make_joiner(group.multiline, cfg.max_event_lines, cfg.max_event_bytes)
        self.tagged: list[tuple[int, list[str]]] = []  # (line offset, tags) of repaired lines
        self.eof_since: float | None = None
        self.in_globs = True

        self.component = group.fields.get("component", "")
        self.type = group.fields.get("type", "")
        #: The group's other fields, added to every record as extra fields.
        self.extra = {k: v for k, v in group.fields.items() if k not in ("component", "type")}
        # Record ids are derived_id("rawlog", host, inode, offset, fingerprint): all but the
        # offset is fixed for the reader, so that part is joined once.
        self._id_head = f"rawlog\x1f{host}\x1f{inode}\x1f".encode()
        self._id_tail = f"\x1f{tail.fp}".encode()

    def record_id(self, offset: int) -> str:
        return id_of_key(self._id_head + str(offset).encode() + self._id_tail)

    def feed(self, lines: Lines | list[Line]) -> list[Entry]:
        if isinstance(lines, list):  # a single leftover line (``Tail.rest``)
            got = Lines()
            for line in lines:
                got.add(line)
            lines = got
        for off, tags in lines.tagged:
            self.tagged.append((off, tags))
            for t in tags:
                m.LINES_REPAIRED.labels(reason=t).inc()
        return self.joiner.feed_many(lines.texts, lines.offsets, lines.ends)

    def tags_for(self, entry: Entry) -> list[str]:
        tags = self.group.tags + entry.tags  # a new list each time: records never share one
        if self.tagged:
            keep = []
            for off, t in self.tagged:
                if entry.offset <= off < entry.end:
                    tags += [x for x in t if x not in tags]
                elif off >= entry.end:
                    keep.append((off, t))
            self.tagged = keep
        return tags


class FilesSource(Component):
    name = "source.files"

    def __init__(self, runtime: Runtime, batcher: Batcher, checkpoints: Checkpoints, spooled: dict[str, Mark]) -> None:
        super().__init__()
        self.runtime = runtime
        self.host: str = runtime.settings.host
        self.groups: list[FileSource] = list(runtime.settings.sources.files)
        self.cfg: AgentConfig = runtime.settings.sources.agent
        self.batcher = batcher
        self.checkpoints = checkpoints
        self.spooled = spooled  # per fingerprint, what the spool already holds (restart)
        self.readers: dict[str, FileReader] = {}  # fingerprint -> reader
        self.lines_read = 0
        self.heartbeat = time.monotonic()
        self._scan_due = 0.0

    async def start(self) -> None:
        self.scan()
        self.spawn(self._loop, "read")

    def alive(self) -> bool:
        """The read loop turned recently (it also turns while waiting on backpressure)."""
        return time.monotonic() - self.heartbeat < max(30.0, 10 * self.cfg.poll_interval)

    # -- finding files -------------------------------------------------
    def _matches(self) -> list[tuple[str, FileSource]]:
        seen: set[str] = set()
        out: list[tuple[str, FileSource]] = []
        for group in self.groups:
            for pattern in group.paths:
                for path in sorted(glob.glob(pattern)):
                    if path in seen or any(fnmatch(path, x) for x in group.exclude) or not os.path.isfile(path):
                        continue
                    seen.add(path)
                    out.append((path, group))
        return out

    def scan(self) -> None:
        """Open files new to us; note which open files are still reachable by a glob."""
        by_key = {r.tail.key: r for r in self.readers.values()}
        reachable: set[tuple[int, int]] = set()
        for path, group in self._matches():
            try:
                key = stat_key(os.stat(path))
            except OSError:
                continue
            reachable.add(key)
            if key in by_key:
                continue
            try:
                self._open(path, group)
            except OSError as exc:
                log.warning("cannot read %s: %s", path, exc)
        for r in self.readers.values():
            r.in_globs = r.tail.key in reachable
            self.checkpoints.touch(r.tail.fp)
            cp = self.checkpoints.get(r.tail.fp)
            try:
                m.FILE_LAG.labels(path=r.tail.path).set(max(0, r.tail.size() - (cp.offset if cp else 0)))
            except OSError:
                pass
        m.FILES_OPEN.set(len(self.readers))

    def _open(self, path: str, group: FileSource) -> None:
        tail = Tail.open(path, self.cfg.max_line_bytes, self.cfg.read_bytes)
        if tail is None:
            return  # first line not complete yet
        if tail.fp in self.readers:
            tail.close()  # same content already being read (a copy, or a second name)
            return
        cp, sp = self.checkpoints.get(tail.fp), self.spooled.get(tail.fp)
        start = max(cp.offset if cp else 0, sp.end if sp else 0)
        if start > tail.size():
            tail.close()  # a copy still being written: wait until it holds what was read
            return
        inode = cp.inode if cp else sp.inode if sp else tail.key[1]
        if cp is None and sp is None:
            # Remember the inode ids derive from before the first line ships: if the file is
            # copytruncated and the agent killed before anything is acknowledged, the copy must
            # still re-send its lines under the original's ids, or downstream counts them twice.
            self.checkpoints.advance(tail.fp, 0, inode, tail.key[0], path)
            try:
                self.checkpoints.save()
            except OSError as exc:  # a full disk: the next acknowledged batch saves it again
                log.warning("cannot save checkpoints: %s", exc)
        tail.seek(start)
        self.readers[tail.fp] = FileReader(tail, group, inode, self.cfg, self.host)
        log.info("reading %s from offset %d", path, start)

    def _copy_of(self, reader: FileReader) -> tuple[int, str] | None:
        """An open descriptor of another file holding the reader's content (copytruncate's copy)."""
        for path, _group in self._matches():
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if stat_key(os.fstat(fd)) != reader.tail.key and fingerprint(fd) == reader.tail.fp \
                        and os.fstat(fd).st_size >= reader.tail.line_start:
                    return fd, path
            except OSError:
                pass
            os.close(fd)
        return None

    # -- reading -------------------------------------------------------
    async def _emit(self, reader: FileReader, entries: list[Entry]) -> None:
        if not entries:
            return
        t = reader.tail
        now = utcnow()
        host, path, inode, fp = self.host, t.path, reader.inode, t.fp
        component, type_, extra = reader.component, reader.type, reader.extra
        fast, tags_for, record_id = RawLog.fast, reader.tags_for, reader.record_id
        records: list[RawLog] = []
        sizes: list[int] = []
        for e in entries:
            lines = e.lines
            records.append(fast(
                id=record_id(e.offset), host=host, path=path, component=component,
                type=type_, offset=e.offset, inode=inode, lines=lines, read_at=now, tags=tags_for(e),
                extra=dict(extra) if extra else None,
            ))
            sizes.append(len(lines[0]) if len(lines) == 1 else sum(map(len, lines)))
        await self.batcher.add_many(records, sizes, [e.end for e in entries], fp, inode, t.key[0], path)

    async def _turn(self, reader: FileReader) -> bool:
        """Read a little of one file; True when it had new data."""
        t = reader.tail
        got = False
        for _ in range(4):
            before = t.pos
            lines = t.read_lines()
            if t.pos == before:
                break
            got = True
            m.BYTES_READ.labels(source="files").inc(t.pos - before)
            m.LINES_READ.labels(source="files").inc(len(lines))
            self.lines_read += len(lines)
            await self._emit(reader, reader.feed(lines))
        if got:
            reader.eof_since = None
            return True
        now = time.monotonic()
        reader.eof_since = reader.eof_since or now
        if reader.joiner.idle(self.cfg.multiline_flush):
            await self._emit(reader, reader.joiner.flush())
        if t.truncated():
            await self._truncated(reader)
        elif (t.deleted() or not reader.in_globs) and now - reader.eof_since >= self.cfg.release_after:
            await self._release(reader, "deleted" if t.deleted() else "rotated away")
        return False

    async def _truncated(self, reader: FileReader) -> None:
        copy = self._copy_of(reader)
        if copy is not None:
            log.info("%s was truncated; continuing in its copy %s", reader.tail.path, copy[1])
            reader.tail.switch(*copy)
            return
        await self._release(reader, "truncated")

    async def _release(self, reader: FileReader, why: str) -> None:
        """Ship what is left of a file that will not grow again, and close it."""
        rest = reader.tail.rest()
        entries = reader.feed([rest]) if rest and rest.text else []
        await self._emit(reader, entries + reader.joiner.flush())
        reader.tail.close()
        self.readers.pop(reader.tail.fp, None)
        try:
            m.FILE_LAG.remove(reader.tail.path)
        except KeyError:
            pass
        log.info("released %s (%s)", reader.tail.path, why)

    async def _loop(self) -> None:
        while True:
            self.heartbeat = time.monotonic()
            if self.heartbeat >= self._scan_due:
                self.scan()
                self._scan_due = self.heartbeat + self.cfg.scan_interval
            busy = False
            for reader in list(self.readers.values()):
                try:
                    busy |= await self._turn(reader)
                except OSError as exc:  # an unreadable file never stops the others
                    log.warning("reading %s failed: %s; releasing it", reader.tail.path, exc)
                    reader.tail.close()
                    self.readers.pop(reader.tail.fp, None)
            await asyncio.sleep(0 if busy else self.cfg.poll_interval)

    async def stop(self) -> None:
        await self.cancel_tasks()
        for r in self.readers.values():
            r.tail.close()
        self.readers.clear()

    def details(self) -> dict[str, Any]:
        return {"files_open": len(self.readers), "lines_read": self.lines_read}
