"""Joining multi-line log entries, per file, before they leave the node.

A traceback split into twenty events is useless to an operator and fires
twenty log alarms, so joining happens at the source, where lines of one file
are still in order. Three joiners:

* ``python``: oslo.log services. A line joins the entry before it only when it
  continues it: the traceback oslo writes under ``logging_exception_prefix``
  (``<time> <pid> ERROR <logger> [instance: ...]`` today, ``TRACE`` in the Kilo
  era) after the record that raised, and lines with no prefix at all (a
  message with newlines, a traceback printed to stderr). Two records that
  merely share the millisecond, pid, level and logger (nova's claims log four
  in one millisecond) stay apart: a record has its context (``[req-...]`` or
  ``[-]``) after the logger, an exception line never does. Entries are kept
  per process: workers of one service writing to the same file interleave
  their tracebacks, and each comes out whole.
* ``none``: every line is an entry.
* a Logstash-style rule: ``pattern``, ``negate``, ``what: previous|next``.

When to ship. Python's logging writes a record and its traceback in one
``write``, so at the end of what a file holds an entry is complete unless its
last line says more must follow (``Traceback (most recent call last):``, a
frame, "During handling of the above exception"); ``ready`` ships every
complete entry at once, and the others after ``multiline_flush`` without a
new line. A log alarm on the last line of a file therefore fires without
waiting for the flush timer.

Offsets are byte offsets in the file: an entry carries the offset of its
first line and the offset just past its last. Once shipped, an entry lets the
file's checkpoint move to ``resume``: never past the first line of an entry
still pending (with per-process joining, a finished entry can end after the
start of another process's unfinished one). The entry's own lines past
``resume`` are its ``skips``: the reader keeps them with the checkpoint, so a
restarted agent neither ships them again as orphans of an interleaved
traceback nor joins them into an entry it already shipped.
"""

from __future__ import annotations

import abc
import re
import time
from collections.abc import Sequence
from typing import Protocol

__all__ = ["Entry", "Joiner", "LogstashJoiner", "NoJoiner", "PythonJoiner", "Span", "make_joiner"]

#: The oslo.log prefix: timestamp, pid, level, logger. Written for ``re``'s speed (it runs on
#: every line): ``\d\d`` rather than ``\d{2}``, spaces rather than ``\s``.
OSLO_HEAD = re.compile(r"(\d\d\d\d-\d\d-\d\d[ T]\d\d:\d\d:\d\d[.,\d]*) +(\d+) +([A-Z]+) +(\S+)")
#: Anything that looks like the start of a record in another format
#: (ISO or syslog date, bracketed date, rabbit's ``=INFO REPORT``).
OTHER_HEAD = re.compile(r"^(?:\d{4}-\d{2}-\d{2}|\d{6}\s|[A-Z][a-z]{2} [ \d]\d |\[|=[A-Z]+ REPORT|<\d+>|\d+\.\d+\.\d+\.\d+ )")

DEFAULT_MAX_LINES = 1000
DEFAULT_MAX_BYTES = 1 << 20
#: A process's unfinished entry is shipped once this many lines of other
#: processes went by without one of its own (a reader catching up on a backlog
#: never reaches the end of the file, where entries are otherwise completed).
MAX_GAP_LINES = 1000

#: A byte range ``(start, end)`` of whole lines in the file.
Span = tuple[int, int]

#: `` <pid> <level> `` layouts a python joiner remembers at most (processes times levels), then starts over.
_MAX_MARKERS = 256

#: Traceback states of an entry (``Entry.tb``).
_PLAIN, _OPEN, _CLOSED = 0, 1, 2
_TB_HEAD = "Traceback (most recent call last)"
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


class Entry:
    """One joined log entry with its byte span in the file.

    ``resume`` and ``skips`` are set when the joiner completes it (see the module's
    docstring); ``key``, ``head``, ``tb``, ``seen``, ``touched`` and ``nbytes`` are the
    python joiner's bookkeeping. Rarely set attributes are class defaults: an entry
    is built per line on the agent's hot path, so it sets only what every entry needs.
    """

    #: Set by the joiner when it completes the entry: see the module's docstring.
    resume: int
    skips: tuple[Span, ...] = ()
    #: The entry's line ranges once another process's line came between two of its lines.
    segments: list[Span] | None = None
    key: str | None = None  # the pid whose entry this is (None: lines without an oslo prefix)
    head: re.Match[str] | None = None  # the oslo prefix of its first line (timestamp, pid, level, logger)
    tb = 0  # traceback state: _PLAIN, _OPEN (more must follow) or _CLOSED
    seen = 0  # the joiner's line count at this entry's last line
    touched = 0.0  # monotonic time of its last line, kept while the traceback is open
    nbytes = -1  # text bytes so far once it grew past one line, for max_bytes

    def __init__(
        self, lines: list[str], offset: int, end: int, tags: list[str] | None = None,
        key: str | None = None, head: re.Match[str] | None = None, seen: int = 0,
    ) -> None:
        self.lines = lines
        self.offset = offset
        self.end = end
        self.tags: list[str] = tags if tags is not None else []
        if key is not None:  # the python joiner's
            self.key, self.head, self.seen = key, head, seen

    @property
    def size(self) -> int:
        return sum(len(line) for line in self.lines)

    def owns(self, offset: int) -> bool:
        """Whether the line starting at ``offset`` is one of this entry's."""
        if self.segments is None:
            return self.offset <= offset < self.end
        return any(a <= offset < b for a, b in self.segments)

    def __repr__(self) -> str:
        return f"Entry(offset={self.offset}, end={self.end}, lines={self.lines!r}, tags={self.tags!r})"


class Joiner(Protocol):
    def feed(self, line: str, offset: int, end: int) -> list[Entry]:
        """Add one line (without its newline); return the entries it completed."""

    def feed_many(self, lines: Sequence[str], offsets: Sequence[int], ends: Sequence[int]) -> list[Entry]:
        """Add many lines at once (the tail reads them in bulk); same result as feeding each."""

    def ready(self, timeout: float, now: float | None = None) -> list[Entry]:
        """At the end of the data: the pending entries that are complete, or waited ``timeout``."""

    def flush(self) -> list[Entry]:
        """Complete and return what is pending (EOF of a released file, shutdown)."""

    def pending_offset(self) -> int | None:
        """Offset of the first line still pending, or None."""

    #: Set when an entry with ``skips`` was completed; the reader resets it (saves a look at every entry).
    skipped: bool


class _Base(abc.ABC):
    def __init__(self, max_lines: int = DEFAULT_MAX_LINES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.current: Entry | None = None
        self._bytes = 0
        self.skipped = False  # entries end where the next begins: never any skips
        #: monotonic time of the last line fed, for idle flushes.
        self.last_feed = time.monotonic()

    def _start(self, line: str, offset: int, end: int) -> list[Entry]:
        done = self.flush()
        self.current = Entry([line], offset, end)
        self._bytes = len(line)
        return done

    def _append(self, line: str, end: int) -> list[Entry]:
        assert self.current is not None
        self.current.lines.append(line)
        self.current.end = end
        self._bytes += len(line)
        if len(self.current.lines) >= self.max_lines or self._bytes >= self.max_bytes:
            self.current.tags.append("multiline_truncated")
            return self.flush()
        return []

    def flush(self) -> list[Entry]:
        done, self.current, self._bytes = self.current, None, 0
        if done is None:
            return []
        done.resume = done.end
        return [done]

    def feed(self, line: str, offset: int, end: int) -> list[Entry]:
        return self.feed_many((line,), (offset,), (end,))

    @abc.abstractmethod
    def feed_many(self, lines: Sequence[str], offsets: Sequence[int], ends: Sequence[int]) -> list[Entry]:
        """Add a read's lines; return the entries they completed."""

    def ready(self, timeout: float, now: float | None = None) -> list[Entry]:
        """A rule says nothing about when an entry is complete: the flush timer decides."""
        if self.current is not None and (now or time.monotonic()) - self.last_feed >= timeout:
            return self.flush()
        return []

    def pending_offset(self) -> int | None:
        return self.current.offset if self.current else None


class NoJoiner(_Base):
    def feed_many(self, lines: Sequence[str], offsets: Sequence[int], ends: Sequence[int]) -> list[Entry]:
        self.last_feed = time.monotonic()
        out = [Entry([line], offset, end) for line, offset, end in zip(lines, offsets, ends)]
        for e in out:
            e.resume = e.end
        return out


def _step(tb: int, text: str) -> int:
    """The traceback state after a continuation line whose text (prefix removed) is ``text``."""
    if text.startswith(_TB_HEAD):
        return _OPEN
    if tb == _PLAIN or not text:  # a message's own lines; a blank line changes nothing
        return tb
    if text[0] in " \t":  # frames and source lines; after the exception line, its indented text
        return tb
    if text.startswith(_CHAINED):
        return _OPEN
    return _CLOSED  # the exception line (and the lines of its message)


class PythonJoiner:
    """oslo.log tracebacks (modern exception prefix and Kilo ``TRACE``), per process."""

    def __init__(self, max_lines: int = DEFAULT_MAX_LINES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        #: Unfinished entries by pid (None: lines with no oslo prefix).
        self.pending: dict[str | None, Entry] = {}
        #: The entry the last line went to: a line with no prefix continues it.
        self.last: Entry | None = None
        self.lines_fed = 0
        #: Some entry completed since the reader last looked had ``skips`` (see ``Joiner.skipped``).
        self.skipped = False
        #: Where the last record's `` <pid> <level> `` stood, what it read, and the pid (a NUL: none yet).
        self._layout: tuple[int, str, str] = (0, "\0", "")
        #: Every `` <pid> <level> `` read at that column by the regex (a record's level), and its pid.
        self._markers: dict[str, str] = {}

    # -- completing entries --------------------------------------------
    def _done(self, e: Entry, out: list[Entry]) -> None:
        """``e`` leaves ``pending``: give it its resume point and the skips that go with it."""
        pending = self.pending
        if pending.get(e.key) is e:
            del pending[e.key]
        if self.last is e:
            self.last = None
        resume = e.end
        if pending:
            # The first pending entry starts lowest: entries are made as their first lines are read,
            # in file order, and one that completes leaves (a new one of its process goes last).
            first = next(iter(pending.values())).offset
            if first < resume:
                resume = first
        e.resume = resume
        if resume < e.end:  # lines of this entry lie past the checkpoint it allows: never re-read them
            segments = e.segments
            if segments is None:  # its lines in one run (the usual entry, a line): past resume as a whole
                e.skips = ((e.offset, e.end),) if e.offset >= resume else ()
            else:
                e.skips = tuple(s for s in segments if s[0] >= resume)
            self.skipped = True
        out.append(e)

    def _start(self, key: str | None, line: str, offset: int, end: int, head: re.Match[str] | None, tb: int,
               out: list[Entry]) -> Entry:
        old = self.pending.get(key)
        if old is not None:
            self._done(old, out)
        e = Entry([line], offset, end)
        e.key, e.head, e.seen = key, head, self.lines_fed
        if tb:
            e.tb, e.touched = tb, time.monotonic()
        self.pending[key] = self.last = e
        return e

    def _append(self, e: Entry, line: str, offset: int, end: int, tb: int, out: list[Entry]) -> None:
        if offset != e.end:  # another process's lines came between: keep the ranges
            if e.segments is None:
                e.segments = [(e.offset, e.end)]
            e.segments.append((offset, end))
        elif e.segments is not None:
            e.segments[-1] = (e.segments[-1][0], end)
        e.lines.append(line)
        e.end = end
        e.tb = tb
        e.seen = self.lines_fed
        e.touched = time.monotonic()
        self.last = e
        e.nbytes = (len(e.lines[0]) if e.nbytes < 0 else e.nbytes) + len(line)
        if len(e.lines) >= self.max_lines or e.nbytes >= self.max_bytes:
            e.tags.append("multiline_truncated")
            self._done(e, out)

    # -- the joiner's interface ----------------------------------------
    def feed(self, line: str, offset: int, end: int) -> list[Entry]:
        return self.feed_many((line,), (offset,), (end,))

    def feed_many(self, lines: Sequence[str], offsets: Sequence[int], ends: Sequence[int]) -> list[Entry]:
        """One loop over a read's lines: the agent's per-line cost, kept small.

        Most lines are records of their own (a level other than ERROR or TRACE): they
        complete their process's previous entry and start one, inline when that entry
        is the only one pending (one process writing: the usual file). ERROR and TRACE
        lines are weighed as exception lines, and lines without a prefix continue the
        last entry, in ``_line``.
        """
        out: list[Entry] = []
        oslo, done, new = OSLO_HEAD.match, out.append, Entry
        pending = self.pending
        fed, last = self.lines_fed, self.last
        col, marker, same = self._layout
        known = self._markers
        for line, offset, end in zip(lines, offsets, ends):
            fed += 1
            m = None
            if line.startswith(marker, col) and line[4] == "-" and line[13] == ":":
                # Laid out as the last record (same column, pid and level, the date's dashes and
                # colons in place): a record of that process, without the regex.
                pid: str | None = same
            else:
                # Several processes interleaved (a service's workers): laid out as an earlier record
                # of one of them, " <pid> <level> " at the same column, read back from the line.
                sep = line.find(" ", col + 1)
                pid = known.get(line[col:line.find(" ", sep + 1) + 1]) if sep > 0 else None
                if pid is not None and (line[4] != "-" or line[13] != ":"):
                    pid = None  # the date's dashes and colons not in place: the regex decides
            if pid is None:
                m = oslo(line)
                if m is None:
                    pid = ""
                else:
                    pid, level = m.group(2, 3)
                    if level == "ERROR" or level == "TRACE":
                        pid = ""
                    else:
                        if col != m.end(1) or len(known) >= _MAX_MARKERS:
                            known.clear()  # another layout: the markers read at the old column mean nothing
                        col, marker, same = m.end(1), line[m.end(1):m.end(3) + 1], pid
                        known[marker] = pid
            if pid:  # a record of its own
                cur = pending.get(pid)
                if cur is not None:
                    if len(pending) == 1:  # nothing else pending: the checkpoint may pass all of it
                        cur.resume = cur.end
                        done(cur)
                    else:
                        self.last = last
                        self._done(cur, out)
                last = pending[pid] = new([line], offset, end, None, pid, m, fed)
                continue
            self.lines_fed, self.last = fed, last
            self._line(line, offset, end, m, out)
            last = self.last
        self._layout = (col, marker, same)
        self.lines_fed, self.last = fed, last
        if len(pending) > 1:
            stale = self.lines_fed - MAX_GAP_LINES
            for e in sorted((p for p in pending.values() if p.seen < stale), key=_by_offset):
                self._done(e, out)
        return out

    def _line(self, line: str, offset: int, end: int, m: re.Match[str] | None, out: list[Entry]) -> None:
        """A line that may continue an entry: an ERROR or TRACE line, or one without the oslo prefix."""
        if m is None:
            last = self.last
            if last is not None and not OTHER_HEAD.match(line):
                self._append(last, line, offset, end, _step(last.tb, line), out)
            else:  # a record of another format, or text with nothing before it
                self._start(None, line, offset, end, None, _step(_PLAIN, line), out)
            return
        ts, pid, level, logger = m.group(1, 2, 3, 4)
        text: str | None = line[m.end() + 1:]  # the prefix ends "<logger> %(instance)s"
        if text and text[0] == "[":
            if text.startswith("[instance: "):
                j = text.find("] ")
                text = text[j + 2:] if j > 0 else ""
            else:
                text = None  # "[req-...]" or "[-]": a record's context, not an exception line
        cur = self.pending.get(pid)
        head = cur.head or OSLO_HEAD.match(cur.lines[0]) if cur is not None else None
        if text is not None and cur is not None and head is not None and logger == head.group(4) \
                and (level == "TRACE" or ts == head.group(1)):
            self._append(cur, line, offset, end, _step(cur.tb, text), out)
            return
        self._start(pid, line, offset, end, m, _step(_PLAIN, text) if text else _PLAIN, out)

    def ready(self, timeout: float, now: float | None = None) -> list[Entry]:
        """Entries complete by their last line, and the others after ``timeout`` without a line."""
        if not self.pending:
            return []
        now = time.monotonic() if now is None else now
        out: list[Entry] = []
        for e in sorted(self.pending.values(), key=_by_offset):
            if e.tb != _OPEN or now - e.touched >= timeout:
                self._done(e, out)
        return out

    def flush(self) -> list[Entry]:
        out: list[Entry] = []
        for e in sorted(self.pending.values(), key=_by_offset):
            self._done(e, out)
        return out

    def pending_offset(self) -> int | None:
        return min((e.offset for e in self.pending.values()), default=None)


def _by_offset(e: Entry) -> int:
    return e.offset


class LogstashJoiner(_Base):
    """Logstash's multiline codec: ``pattern``, ``negate``, ``what``."""

    def __init__(
        self, pattern: str, negate: bool = False, what: str = "previous",
        max_lines: int = DEFAULT_MAX_LINES, max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(max_lines, max_bytes)
        if what not in ("previous", "next"):
            raise ValueError(f"multiline what must be previous or next, not {what!r}")
        self.regex = re.compile(pattern)
        self.negate = negate
        self.what = what

    def feed_many(self, lines: Sequence[str], offsets: Sequence[int], ends: Sequence[int]) -> list[Entry]:
        out: list[Entry] = []
        for line, offset, end in zip(lines, offsets, ends):
            out += self._feed_one(line, offset, end)
        return out

    def _feed_one(self, line: str, offset: int, end: int) -> list[Entry]:
        self.last_feed = time.monotonic()
        hit = bool(self.regex.search(line)) != self.negate
        if self.what == "previous":
            if hit and self.current is not None:
                return self._append(line, end)
            return self._start(line, offset, end)
        # what: next — a matching line belongs with the line after it.
        if self.current is None:
            self.current = Entry([line], offset, end)
            self._bytes = len(line)
            return [] if hit else self.flush()
        done = self._append(line, end)
        if done:
            return done
        return [] if hit else self.flush()


def make_joiner(spec: object, max_lines: int = DEFAULT_MAX_LINES, max_bytes: int = DEFAULT_MAX_BYTES) -> Joiner:
    """A joiner from config: ``"python"``, ``"none"``, or an object with pattern/negate/what."""
    if spec in (None, "none"):
        return NoJoiner(max_lines, max_bytes)
    if spec == "python":
        return PythonJoiner(max_lines, max_bytes)
    pattern = getattr(spec, "pattern", None)
    if pattern is None and isinstance(spec, dict):
        return LogstashJoiner(spec["pattern"], spec.get("negate", False), spec.get("what", "previous"),
                              max_lines, max_bytes)
    if pattern is not None:
        return LogstashJoiner(pattern, getattr(spec, "negate", False), getattr(spec, "what", "previous"),
                              max_lines, max_bytes)
    raise ValueError(f"unknown multiline setting {spec!r}: use python, none or a pattern/negate/what rule")
