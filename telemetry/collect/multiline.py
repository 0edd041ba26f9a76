"""Joining multi-line log entries, per file, before they leave the node.

A traceback split into twenty events is useless to an operator and fires
twenty log alarms, so joining happens at the source, where lines of one file
are still in order. Three joiners:

* ``python``: oslo.log services. Kilo-era services log the traceback as
  ``TRACE`` lines after the line that raised; modern ones re-log every line
  with the same timestamp, pid, level and logger (oslo's multi-line prefix).
  Lines with no timestamp at all (a traceback printed to stderr) join too.
* ``none``: every line is an entry.
* a Logstash-style rule: ``pattern``, ``negate``, ``what: previous|next``.

Offsets are byte offsets in the file: an entry carries the offset of its
first line and the offset just past its last, so a checkpoint never moves
past a line that is still waiting in an unfinished entry.
"""

from __future__ import annotations

import abc
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Entry", "Joiner", "LogstashJoiner", "NoJoiner", "PythonJoiner", "make_joiner"]

#: The oslo.log prefix: timestamp, pid, level, logger.
OSLO_HEAD = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)\s+(?P<pid>\d+)\s+(?P<level>[A-Z]+)\s+(?P<logger>\S+)"
)
#: Anything that looks like the start of a record in another format
#: (ISO or syslog date, bracketed date, rabbit's ``=INFO REPORT``).
OTHER_HEAD = re.compile(r"^(?:\d{4}-\d{2}-\d{2}|\d{6}\s|[A-Z][a-z]{2} [ \d]\d |\[|=[A-Z]+ REPORT|<\d+>|\d+\.\d+\.\d+\.\d+ )")

DEFAULT_MAX_LINES = 1000
DEFAULT_MAX_BYTES = 1 << 20


@dataclass
class Entry:
    """One joined log entry with its byte span in the file."""

    lines: list[str]
    offset: int
    end: int
    tags: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(line) for line in self.lines)


class Joiner(Protocol):
    def feed(self, line: str, offset: int, end: int) -> list[Entry]:
        """Add one line (without its newline); return the entries it completed."""

    def feed_many(self, lines: Sequence[str], offsets: Sequence[int], ends: Sequence[int]) -> list[Entry]:
        """Add many lines at once (the tail reads them in bulk); same result as feeding each."""

    def flush(self) -> list[Entry]:
        """Complete and return what is pending (EOF, idle timeout, shutdown)."""

    def pending_offset(self) -> int | None:
        """Offset of the first line still pending, or None."""

    def idle(self, timeout: float, now: float | None = None) -> bool:
        """True when an entry is pending and no line came for ``timeout`` seconds."""


class _Base(abc.ABC):
    def __init__(self, max_lines: int = DEFAULT_MAX_LINES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.current: Entry | None = None
        self._bytes = 0
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
        return [done] if done else []

    def feed(self, line: str, offset: int, end: int) -> list[Entry]:
        return self.feed_many((line,), (offset,), (end,))

    @abc.abstractmethod
    def feed_many(self, lines: Sequence[str], offsets: Sequence[int], ends: Sequence[int]) -> list[Entry]:
        """Add a read's lines; return the entries they completed."""

    def pending_offset(self) -> int | None:
        return self.current.offset if self.current else None

    def idle(self, timeout: float, now: float | None = None) -> bool:
        """True when something is pending and no line came for ``timeout`` seconds."""
        return self.current is not None and (now or time.monotonic()) - self.last_feed >= timeout


class NoJoiner(_Base):
    def feed_many(self, lines: Sequence[str], offsets: Sequence[int], ends: Sequence[int]) -> list[Entry]:
        self.last_feed = time.monotonic()
        return [Entry([line], offset, end) for line, offset, end in zip(lines, offsets, ends)]


class PythonJoiner(_Base):
    """oslo.log tracebacks, Kilo (TRACE) and modern (same prefix) forms."""

    def __init__(self, max_lines: int = DEFAULT_MAX_LINES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__(max_lines, max_bytes)
        self._head: tuple[str, str, str, str] | None = None  # ts, pid, level, logger of the entry

    def feed_many(self, lines: Sequence[str], offsets: Sequence[int], ends: Sequence[int]) -> list[Entry]:
        """One loop over a read's lines, state in locals: the agent's per-line cost, kept small.

        A line with the oslo prefix continues the entry when it has the entry's pid and
        either is a Kilo ``TRACE`` line after a non-TRACE head or repeats the head's
        timestamp, level and logger (modern re-logging); a line with no prefix
        continues it unless it looks like the start of a record of another format.
        """
        self.last_feed = time.monotonic()
        out: list[Entry] = []
        oslo, other = OSLO_HEAD.match, OTHER_HEAD.match
        max_lines, max_bytes = self.max_lines, self.max_bytes
        cur, head, size = self.current, self._head, self._bytes
        for line, offset, end in zip(lines, offsets, ends):
            m = oslo(line)
            if m is None:
                new_head = None
                joins = cur is not None and not other(line)  # traceback text with no prefix of its own
            else:
                ts, pid, level, logger = m.group(1, 2, 3, 4)
                new_head = (ts, pid, level, logger)
                joins = cur is not None and head is not None and new_head[1] == head[1] and (
                    (new_head[2] == "TRACE" and head[2] != "TRACE")  # Kilo: TRACE lines follow the raiser
                    or (new_head[0] == head[0] and new_head[2] == head[2] and new_head[3] == head[3])  # modern
                )
            if joins:
                assert cur is not None
                cur.lines.append(line)
                cur.end = end
                size += len(line)
                if len(cur.lines) >= max_lines or size >= max_bytes:
                    cur.tags.append("multiline_truncated")
                    out.append(cur)
                    cur, head, size = None, None, 0
                continue
            if cur is not None:
                out.append(cur)
            cur, head, size = Entry([line], offset, end), new_head, len(line)
        self.current, self._head, self._bytes = cur, head, size
        return out

    def flush(self) -> list[Entry]:
        out = super().flush()
        self._head = None
        return out


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
