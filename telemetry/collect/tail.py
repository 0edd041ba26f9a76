"""Reading one log file by identity, line by line, with bounded memory.

A file is known by a fingerprint of its first line (as Vector's ``checksum``
fingerprint), not by its name or inode alone: a name is reused at every
rotation, an inode is reused after a delete, and a copytruncate copy has a
new inode but the same content. With the fingerprint, the copy is recognised
as the file already being read, a truncated file as a new one, and a reused
inode never inherits the old file's offset. The documented limit, shared with
Vector: two live files whose first lines are byte-identical count as one.

Lines are split on ``\\n`` from fixed-size reads; a line longer than
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

__all__ = ["FP_BYTES", "Line", "Tail", "fingerprint", "stat_key"]

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
        chunk = os.pread(self.fd, budget or self.read_bytes, self.pos)
        if not chunk:
            return []
        self.pos += len(chunk)
        out: list[Line] = []
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                self._keep(chunk[start:])
                return out
            self._keep(chunk[start:nl])
            end = self.pos - len(chunk) + nl + 1
            line = self._take(end)
            if line is not None:
                out.append(line)
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
