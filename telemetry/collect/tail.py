"""Reading one log file by identity, line by line, with bounded memory.

A file is known by a fingerprint of its first line (as Vector's ``checksum``
fingerprint), not by its name or inode alone: a name is reused at every
rotation, an inode is reused after a delete, and a copytruncate copy has a
new inode but the same content. With the fingerprint, the copy is recognised
as the file already being read, a truncated file as a new one, and a reused
inode never inherits the old file's offset. The documented limit, shared with
Vector: two live files whose first lines are byte-identical count as one.

Lines are split on ``\\n`` from large reads, a whole read at a time: one
decode and one ``split`` for the clean lines of a read (valid UTF-8, no NUL,
no CR, none too long), since per-line work dominated the agent's cost; the
careful line-by-line path runs only for a read holding a line that needs
repair, and gives the same lines and offsets. A line longer than
``max_line`` is cut, tagged ``truncated`` and the rest skipped as it streams
by, so a 10 MB line costs ``max_line`` bytes of memory, not 10 MB. Invalid
UTF-8 is replaced (U+FFFD) and tagged ``invalid_utf8``; NUL bytes (the
sparse padding a copytruncate race leaves) are removed and tagged
``nul_bytes``, and a line that was only NULs is dropped.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from itertools import accumulate

__all__ = ["FP_BYTES", "Line", "Lines", "Tail", "fingerprint", "stat_key"]

#: At most this many bytes of the first line make the fingerprint.
FP_BYTES = 1024


def fingerprint(fd: int) -> str | None:
    """Hash of the file's first line (up to FP_BYTES); None until that line is complete."""
    head = os.pread(fd, FP_BYTES, 0)
    nl = head.find(b"\n")
    if nl < 0 and len(head) < FP_BYTES:
        return None  # the first line is still being written: wait for it
    first = head[: nl + 1] if nl >= 0 else head
    return hashlib.blake2b(first, digest_size=12).hexdigest()


def stat_key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


@dataclass(slots=True)
class Line:
    """One line without its newline, with its byte span and any tags."""

    text: str
    offset: int
    end: int
    tags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Lines:
    """The complete lines of one read, as parallel lists (no object per line).

    ``tagged`` holds ``(offset, tags)`` for the few lines that needed repair.
    """

    texts: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    tagged: list[tuple[int, list[str]]] = field(default_factory=list)

    def add(self, line: Line) -> None:
        self.texts.append(line.text)
        self.offsets.append(line.offset)
        self.ends.append(line.end)
        if line.tags:
            self.tagged.append((line.offset, line.tags))

    def __len__(self) -> int:
        return len(self.texts)


def decode(raw: bytes) -> tuple[str, list[str]]:
    """Text of a raw line and the tags saying what had to be repaired."""
    tags: list[str] = []
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        return raw.decode("utf-8"), tags
    except UnicodeDecodeError:
        tags.append("invalid_utf8")
        return raw.decode("utf-8", errors="replace"), tags


class Tail:
    """An open file read from a position; survives rename, notices truncation and deletion."""

    def __init__(self, path: str, fd: int, fp: str, pos: int, max_line: int, read_bytes: int = 256 << 10) -> None:
        self.path = path
        self.fd = fd
        self.fp = fp
        st = os.fstat(fd)
        self.key = stat_key(st)
        self.pos = pos  # offset of the next byte to read
        self.line_start = pos  # offset where the buffered partial line starts
        self.max_line = max_line
        self.read_bytes = read_bytes
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line: drop bytes up to its newline
        self._cut: bytes = b""  # the kept head of the over-long line
        self._nul = False  # NUL bytes were removed from the current line

    @classmethod
    def open(cls, path: str, max_line: int, read_bytes: int = 256 << 10) -> Tail | None:
        """Open ``path`` (following symlinks) if its first line is complete; None otherwise."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fp = fingerprint(fd)
        except OSError:
            os.close(fd)
            raise
        if fp is None:
            os.close(fd)
            return None
        return cls(path, fd, fp, 0, max_line, read_bytes)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def deleted(self) -> bool:
        return os.fstat(self.fd).st_nlink == 0

    def truncated(self) -> bool:
        """The file shrank below what was read, or its first line changed (rewritten in place)."""
        if self.size() < self.pos:
            return True
        return fingerprint(self.fd) != self.fp

    def seek(self, pos: int) -> None:
        self.pos = self.line_start = pos
        self._buf.clear()
        self._skipping, self._cut, self._nul = False, b"", False

    def switch(self, fd: int, path: str) -> None:
        """Continue the same content in another file (the copy copytruncate made)."""
        os.close(self.fd)
        self.fd, self.path = fd, path
        self.key = stat_key(os.fstat(fd))

    def read(self, budget: int | None = None) -> list[Line]:
        """Complete lines from one read of up to ``budget`` bytes; [] at EOF."""
        got = self.read_lines(budget)
        tags = dict(got.tagged)
        return [Line(t, o, e, tags.get(o, [])) for t, o, e in zip(got.texts, got.offsets, got.ends)]

    def read_lines(self, budget: int | None = None) -> Lines:
        """Complete lines from one read of up to ``budget`` bytes, in bulk; empty at EOF."""
        out = Lines()
        chunk = os.pread(self.fd, budget or self.read_bytes, self.pos)
        if not chunk:
            return out
        if fingerprint(self.fd) != self.fp:
            # Truncated and written again past our position since the last read (copytruncate
            # while we lag): these bytes belong to the new content, not to this file. Read
            # nothing; the caller sees EOF, finds truncated() true and continues in the copy.
            return out
        base = self.pos  # file offset of chunk[0]
        self.pos += len(chunk)
        last = chunk.rfind(b"\n")
        if last < 0:
            self._keep(chunk)
            return out
        start = 0
        if self._buf or self._skipping or self._nul:  # finish the line the last read left open
            nl = chunk.find(b"\n")
            self._keep(chunk[:nl])
            line = self._take(base + nl + 1)
            if line is not None:
                out.add(line)
            start = nl + 1
        if start <= last and not self._bulk(chunk, start, last, base, out):
            self._careful(chunk, start, last, base, out)
        self._keep(chunk[last + 1:])
        return out

    def _bulk(self, chunk: bytes, start: int, last: int, base: int, out: Lines) -> bool:
        """Lines ``chunk[start:last]`` in one decode and split; False if one needs repair."""
        body = chunk[start:last]
        if b"\0" in body or b"\r" in body:
            return False
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return False
        texts = text.split("\n")
        sizes = [len(t) for t in texts] if text.isascii() else [len(t.encode()) for t in texts]
        if max(sizes) > self.max_line:
            return False
        bounds = list(accumulate([n + 1 for n in sizes], initial=base + start))
        out.texts += texts
        out.offsets += bounds[:-1]
        out.ends += bounds[1:]
        self.line_start = base + last + 1
        return True

    def _careful(self, chunk: bytes, start: int, last: int, base: int, out: Lines) -> None:
        """Line by line, repairing as needed, up to and including the newline at ``last``."""
        while start <= last:
            nl = chunk.find(b"\n", start)
            self._keep(chunk[start:nl])
            line = self._take(base + nl + 1)
            if line is not None:
                out.add(line)
            start = nl + 1

    def _keep(self, part: bytes) -> None:
        """Buffer part of the current line, never more than max_line bytes."""
        if self._skipping or not part:
            return
        if b"\0" in part:  # removed before counting, so padding never pushes text out
            part = part.replace(b"\0", b"")
            self._nul = True
        room = self.max_line - len(self._buf)
        if len(part) <= room:
            self._buf += part
            return
        self._buf += part[:room]
        self._cut, self._skipping = bytes(self._buf), True
        self._buf.clear()

    def _take(self, end: int) -> Line | None:
        raw, tags = (self._cut, ["truncated"]) if self._skipping else (bytes(self._buf), [])
        if self._nul:
            tags.append("nul_bytes")
        offset = self.line_start
        self._buf.clear()
        self._skipping, self._cut, self._nul = False, b"", False
        self.line_start = end
        if not raw and tags == ["nul_bytes"]:
            return None  # only NUL padding: nothing an operator could read
        text, more = decode(raw)
        return Line(text, offset, end, tags + more)

    def rest(self) -> Line | None:
        """The unterminated last line, for a file that will never grow again."""
        if not self._buf and not self._skipping:
            return None
        return self._take(self.pos)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
