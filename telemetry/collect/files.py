"""The file source: globs from ``sources.files``, tailed, joined, batched, shipped.

Files are tracked by content fingerprint (see ``tail``). A scan every
``scan_interval`` re-expands the globs, so files created while running are
picked up; a file whose fingerprint is already being read (a copytruncate
copy, a second glob matching it) is left alone until that reader needs it.
A reader keeps its descriptor across a rename and reads to the end before it
lets go of a file that was deleted or rotated out of the globs.

copytruncate: when a file shrinks (or its first line changes) the data
between our position and the truncation point is only in the copy logrotate
made just before. The copy is looked for by fingerprint among the globbed
files and every file of the original's folder (the copy's name need not
match a glob), and reading continues in it. After a restart the same search
runs for every file whose checkpoint had not reached its end (rename or
copytruncate while the agent was down): reading resumes at the checkpoint in
whatever file holds that content now. What cannot be recovered, because the
copy is outside the folder and the globs, or was compressed or deleted before
we read it, is counted (``telemetry_agent_data_lost_total``) and logged.

Record ids derive from host + inode + fingerprint + offset (``reader.record_id_prefix``):
the inode is the one the content was first read from (kept in the checkpoint,
so the copy of a rotated file yields the same ids), and the fingerprint keeps
the new content of a truncated or reused inode from colliding with the old.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from telemetry.collect import agent_metrics as m
from telemetry.collect.batcher import Batcher, Mark, Value
from telemetry.collect.checkpoints import Checkpoints
from telemetry.collect.finder import Finder
from telemetry.collect.multiline import Entry
from telemetry.collect.reader import FileReader
from telemetry.collect.tail import Tail
from telemetry.component import Component
from telemetry.config.sources import AgentConfig, FileSource

log = logging.getLogger(__name__)

__all__ = ["FileReader", "FilesSource"]


class FilesSource(Component):
    name = "source.files"

    def __init__(
        self, groups: list[FileSource], cfg: AgentConfig, host: str, batcher: Batcher, checkpoints: Checkpoints,
        spooled: dict[str, Mark],
    ) -> None:
        super().__init__()
        self.host = host
        self.groups = groups
        self.cfg = cfg
        self.batcher = batcher
        self.checkpoints = checkpoints
        self.spooled = spooled  # per fingerprint, what the spool already holds (restart)
        self.finder = Finder(groups)
        self.readers: dict[str, FileReader] = {}  # fingerprint -> reader
        self.lines_read = 0
        self.heartbeat = time.monotonic()
        self._scan_due = 0.0
        #: Files the globs found before their first line was complete: tried again every poll, not
        #: every scan, so a new log file's first lines ship within ``poll_interval``.
        self._waiting: list[tuple[str, FileSource]] = []

    async def start(self) -> None:
        self.scan()
        self.recover()
        self.spawn(self._loop, "read")

    def alive(self) -> bool:
        """The read loop turned recently (it also turns while waiting on backpressure)."""
        return time.monotonic() - self.heartbeat < max(30.0, 10 * self.cfg.poll_interval)

    # -- finding files -------------------------------------------------
    def scan(self) -> None:
        """Open files new to us; note which open files are still reachable by a glob."""
        by_key = {r.tail.key: r for r in self.readers.values()}
        reachable: set[tuple[int, int]] = set()
        self._waiting = []
        for path, group, key in self.finder.matches():
            reachable.add(key)
            if key in by_key:
                continue
            try:
                if not self._open(path, group):
                    self._waiting.append((path, group))
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

    def recover(self) -> None:
        """After a restart: files whose checkpoint had not reached their end, under their new names.

        A rename or a copytruncate while the agent was down leaves the unread rest of a file
        under a name the globs may not match (``app.log.1``); it is found by fingerprint in
        the folder where the file was read. If it is gone, what it held past the checkpoint
        is lost: counted and logged, once.
        """
        for cp in self.checkpoints.unfinished():
            if cp.fp in self.readers:
                continue
            group = self.finder.group_of(cp.path)
            if group is None:
                continue  # no longer configured
            found = self.finder.find(cp.fp, [os.path.dirname(cp.path)], exclude=self._open_keys())
            if found is None:
                log.warning("%s (read up to offset %d) is gone and no file holds its content any more: "
                            "lines written after that offset were lost", cp.path, cp.offset)
                m.DATA_LOST.labels(reason="gone_before_restart").inc()
                self.checkpoints.release(cp.fp, cp.offset)
                continue
            fd, path = found
            os.close(fd)
            try:
                self._open(path, group, in_globs=False)
            except OSError as exc:
                log.warning("cannot read %s: %s", path, exc)

    def _open_keys(self) -> set[tuple[int, int]]:
        return {r.tail.key for r in self.readers.values()}

    def _retry_waiting(self) -> None:
        """Open the files that had no complete first line at the last scan, once they have one."""
        still = []
        for path, group in self._waiting:
            try:
                if not self._open(path, group):
                    still.append((path, group))
            except OSError:
                pass  # gone or unreadable: the next scan says so
        self._waiting = still

    def _open(self, path: str, group: FileSource, in_globs: bool = True) -> bool:
        """Start reading ``path``; False when its first line is not complete yet (try again later)."""
        tail = Tail.open(path, self.cfg.max_line_bytes, self.cfg.read_bytes)
        if tail is None:
            return False  # first line not complete yet
        if tail.fp in self.readers:
            tail.close()  # same content already being read (a copy, or a second name)
            return True
        cp, sp = self.checkpoints.get(tail.fp), self.spooled.get(tail.fp)
        start, skips = (cp.offset, list(cp.skips)) if cp else (0, [])
        if sp is not None and sp.end >= start:  # the spool holds more than was acknowledged
            start, skips = sp.end, list(sp.skips)
        if start > tail.size():
            tail.close()  # a copy still being written: the next scan looks again
            return True
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
        reader = FileReader(tail, group, inode, self.cfg, self.host, skips)
        reader.in_globs = in_globs
        self.readers[tail.fp] = reader
        log.info("reading %s from offset %d", path, start)
        return True

    # -- reading -------------------------------------------------------
    async def _emit(self, reader: FileReader, entries: list[Entry]) -> None:
        """Encode the entries as RawLog records (JSON, once) and hand them to the batcher."""
        if not entries:
            return
        t = reader.tail
        values: list[Value] = reader.records(entries) if self.batcher.objects else reader.encoded(entries)
        sizes = reader.sizes(entries)
        skips = reader.marks(entries)
        inode, dev, path = reader.inode, t.key[0], t.path

        def mark_at(i: int) -> Mark:
            return Mark(entries[i].resume, inode, dev, path, skips[i] if skips else ())

        await self.batcher.add_many(values, sizes, reader.host_key, t.fp, mark_at)

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
        # At the end of what the file holds: complete entries go now, not after a timer.
        await self._emit(reader, reader.joiner.ready(self.cfg.multiline_flush))
        now = time.monotonic()
        reader.eof_since = reader.eof_since or now
        if t.truncated():
            await self._truncated(reader)
        elif (t.deleted() or not reader.in_globs) and now - reader.eof_since >= self.cfg.release_after:
            await self._release(reader, "deleted" if t.deleted() else "rotated away")
        return False

    async def _truncated(self, reader: FileReader) -> None:
        t = reader.tail
        dirs = [os.path.dirname(t.path)]
        copy = self.finder.find(t.fp, dirs, exclude={t.key}, min_size=t.line_start, globs=True)
        if copy is not None:
            log.info("%s was truncated; continuing in its copy %s", t.path, copy[1])
            t.switch(*copy)
            return
        log.warning("%s was truncated and no copy of it was found among the globbed files or in %s: "
                    "lines written after offset %d before the truncation were lost", t.path, dirs[0], t.line_start)
        m.DATA_LOST.labels(reason="truncated_without_copy").inc()
        await self._release(reader, "truncated")

    async def _release(self, reader: FileReader, why: str) -> None:
        """Ship what is left of a file that will not grow again, and close it."""
        rest = reader.tail.rest()
        entries = reader.feed([rest]) if rest and rest.text else []
        await self._emit(reader, entries + reader.joiner.flush())
        reader.tail.close()
        self.readers.pop(reader.tail.fp, None)
        self.checkpoints.release(reader.tail.fp, reader.marked)
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
            elif self._waiting:
                self._retry_waiting()
            busy = False
            for reader in list(self.readers.values()):
                try:
                    busy |= await self._turn(reader)
                except OSError as exc:  # an unreadable file never stops the others
                    log.warning("reading %s failed: %s; releasing it", reader.tail.path, exc)
                    reader.tail.close()
                    self.readers.pop(reader.tail.fp, None)
            if not busy:
                # Every file is at its end: what is batched goes now, not after batch_wait.
                await self.batcher.flush()
            await asyncio.sleep(0 if busy else self.cfg.poll_interval)

    async def stop(self) -> None:
        await self.cancel_tasks()
        for r in self.readers.values():
            r.tail.close()
        self.readers.clear()

    def details(self) -> dict[str, Any]:
        return {"files_open": len(self.readers), "lines_read": self.lines_read}
