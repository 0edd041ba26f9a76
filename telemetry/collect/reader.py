"""One file's reader: its tail, its joiner, the group's fields, and the records its entries become.

Apart from the file source's loop (``files``) because this is per-entry work on the agent's hot path,
plain and synchronous, which mypyc compiles (``telemetry._native``); the loop awaits, and stays Python.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, insort
from typing import cast

import orjson

from telemetry.collect import agent_metrics as m
from telemetry.collect.batcher import Value
from telemetry.collect.multiline import Entry, Joiner, Span, make_joiner
from telemetry.collect.tail import Line, Lines, Tail
from telemetry.config.sources import AgentConfig, FileSource
from telemetry.fastcodec import raw_logs
from telemetry.models import iso_utc
from telemetry.timeutil import utcnow

__all__ = ["FileReader", "record_id_prefix", "skips_per_entry"]


def record_id_prefix(host: str, inode: int, fp: str) -> str:
    """What a file's record ids start with: a hash of what identifies its content on this host.

    A record's id is this prefix and the entry's offset in hex. It is derived, not random,
    so an entry read again after a crash gets the same id and the server drops the
    repeat; and it costs no hash per entry (a uuid5 each was a fifth of the agent's time).
    """
    digest = hashlib.blake2b(f"rawlog\x1f{host}\x1f{inode}\x1f{fp}".encode(), digest_size=12).hexdigest()
    return f"{digest}-"


class FileReader:
    """One file's content: its tail, its joiner, the group's fields, its resume point."""

    def __init__(
        self, tail: Tail, group: FileSource, inode: int, cfg: AgentConfig, host: str = "",
        skips: list[Span] | tuple[Span, ...] = (),
    ) -> None:
        self.tail = tail
        self.group = group
        self.inode = inode  # the inode record ids use (the original's, for a copy)
        self.joiner: Joiner = make_joiner(group.multiline, cfg.max_event_lines, cfg.max_event_bytes)
        self.tagged: list[tuple[int, list[str]]] = []  # (line offset, tags) of repaired lines
        self.eof_since: float | None = None
        self.in_globs = True
        #: Lines past the checkpoint already shipped: dropped when read again, kept with every mark.
        self.skips: list[Span] = sorted(skips)
        self.marked = tail.pos  # the resume point of the last entry handed to the batcher

        self.host = host
        self.host_key = host.encode()  # the bus's partition key: per-host order
        self.component = group.fields.get("component", "")
        self.type = group.fields.get("type", "")
        #: The group's other fields, added to every record as extra fields.
        self.extra = {k: v for k, v in group.fields.items() if k not in ("component", "type")}
        self.id_prefix = record_id_prefix(host, inode, tail.fp)

    def encoder(self, read_at: str) -> bytes:
        """This file's records as JSON, laid out as ``RawLog.to_json`` writes them, with ``%``
        placeholders for what each entry brings (id and offset, lines, tags): ``_emit`` fills one
        per entry with a single format (a test holds the result equal to the validated RawLog)."""

        def js(value: object) -> bytes:
            return orjson.dumps(value).replace(b"%", b"%%")

        extra = b"".join(b"," + js(k) + b":" + js(v) for k, v in self.extra.items())
        return (b'{"id":' + js(self.id_prefix)[:-1] + b'%x","host":' + js(self.host) + b',"path":'
                + js(self.tail.path) + b',"component":' + js(self.component) + b',"type":' + js(self.type)
                + b',"offset":%d,"inode":' + js(self.inode) + b',"lines":%s,"read_at":' + js(read_at)
                + b',"tags":%s' + extra + b"}")

    def encoded(self, entries: list[Entry]) -> list[Value]:
        """The entries' RawLog records as JSON, one ``encoder`` format each."""
        record, dumps, tags_for = self.encoder(iso_utc(utcnow())), orjson.dumps, self.tags_for
        plain_tags = dumps(self.group.tags) if not self.tagged else None
        return [record % (e.offset, e.offset, dumps(e.lines),
                          plain_tags if plain_tags is not None and not e.tags else dumps(tags_for(e)))
                for e in entries]

    def records(self, entries: list[Entry]) -> list[Value]:
        """The same records as objects, for a bus in this process (nothing encoded between stages)."""
        prefix, group_tags = self.id_prefix, self.group.tags
        common = {"id": "", "host": self.host, "path": self.tail.path, "component": self.component, "type": self.type,
                  "offset": 0, "inode": self.inode, "lines": None, "read_at": utcnow(), "tags": None}
        plain = not self.tagged
        records = raw_logs(common, [(f"{prefix}{e.offset:x}", e.offset, e.lines,
                                     list(group_tags) if plain and not e.tags else self.tags_for(e))
                                    for e in entries], self.extra or None)
        return cast("list[Value]", records)

    @staticmethod
    def sizes(entries: list[Entry]) -> list[int]:
        """Each entry's text length, as the batcher weighs it."""
        return [len(e.lines[0]) if len(e.lines) == 1 else sum(map(len, e.lines)) for e in entries]

    def record_id(self, offset: int) -> str:
        return f"{self.id_prefix}{offset:x}"

    def feed(self, lines: Lines | list[Line]) -> list[Entry]:
        if isinstance(lines, list):  # a single leftover line (``Tail.rest``)
            got = Lines()
            for line in lines:
                got.add(line)
            lines = got
        if self.skips and lines.offsets and lines.offsets[0] < self.skips[-1][1]:
            lines = self._unshipped(lines)
        for off, tags in lines.tagged:
            self.tagged.append((off, tags))
            for t in tags:
                m.LINES_REPAIRED.labels(reason=t).inc()
        return self.joiner.feed_many(lines.texts, lines.offsets, lines.ends)

    def _unshipped(self, lines: Lines) -> Lines:
        """``lines`` without those shipped before a restart (in ``skips``)."""
        spans = self.skips
        out = Lines()
        for text, off, end in zip(lines.texts, lines.offsets, lines.ends):
            if not any(a <= off < b for a, b in spans):
                out.texts.append(text)
                out.offsets.append(off)
                out.ends.append(end)
        keep = set(out.offsets)
        out.tagged = [(off, t) for off, t in lines.tagged if off in keep]
        return out

    def marks(self, entries: list[Entry]) -> list[tuple[Span, ...]] | None:
        """Per entry, the skips its resume point keeps; None when no entry has any (the usual case)."""
        self.marked = entries[-1].resume
        if not self.skips and not self.joiner.skipped:
            return None
        self.joiner.skipped = False
        out, self.skips = skips_per_entry(self.skips, entries)
        return out

    def tags_for(self, entry: Entry) -> list[str]:
        tags = self.group.tags + entry.tags  # a new list each time: records never share one
        if self.tagged:
            keep = []
            for off, t in self.tagged:
                if entry.owns(off):
                    tags += [x for x in t if x not in tags]
                elif off >= entry.resume:  # a line of an entry still to come
                    keep.append((off, t))
            self.tagged = keep
        return tags


def skips_per_entry(skips: list[Span], entries: list[Entry]) -> tuple[list[tuple[Span, ...]], list[Span]]:
    """Per entry, the sorted skips at or past its resume point (``skips`` and those the entries bring,
    by insort and a cut, not a sort per entry); and those left after the last."""
    out: list[tuple[Span, ...]] = []
    acc = list(skips)
    for e in entries:
        for span in e.skips:
            insort(acc, span)
        if acc and acc[0][0] < e.resume:  # sorted by start: those below the resume point are first
            del acc[:bisect_left(acc, (e.resume,))]
        out.append(tuple(acc))
    return out, acc
