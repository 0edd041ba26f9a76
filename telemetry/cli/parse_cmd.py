"""``telemetry parse``: the grok debugger operators test their patterns with.

Reads a file or stdin, joins multi-line entries as the agent would, parses
each with a built-in type or the given ``--pattern``s, and writes one JSON
object per event on stdout (so it pipes into ``jq``). Progress goes to
stderr, only for files big enough to wait for.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import IO, Any, BinaryIO, cast

import click
import orjson

from telemetry.cli import main
from telemetry.cli.client import ApiClient, api_options
from telemetry.cli.common import console_of, err, fail
from telemetry.collect.multiline import make_joiner
from telemetry.gctune import tune_for_daemon
from telemetry.parse import GrokError, Parser
from telemetry.parse.budget import armed
from telemetry.parse.parser import DEFAULT_TIMEOUT
from telemetry.workerproc import roomy_pipe, write_all

#: Files above this size get a progress bar on stderr.
PROGRESS_BYTES = 4 << 20


#: Bytes read at a time: lines are split and decoded a read at a time, not one by one.
READ_BYTES = 1 << 20


def _lines(stream: BinaryIO, advance: Callable[[int], object] | None = None) -> Iterator[tuple[list[str], int]]:
    """(lines of one read, byte offset of the first), each without its line end, invalid UTF-8 replaced.

    Decoding a whole read gives the same text as decoding line by line: a newline
    is never part of a multi-byte sequence, so replacement stops at it.
    """
    offset, rest = 0, b""
    # read1: what is there, so a pipe or a terminal never waits for a full read
    read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
    while True:
        chunk = read(READ_BYTES)
        if advance is not None and chunk:
            advance(len(chunk))
        if not chunk:
            if rest:
                yield [rest.decode("utf-8", "replace").rstrip("\r\n")], offset
            return
        data = rest + chunk
        last = data.rfind(b"\n")
        if last < 0:
            rest = data
            continue
        rest = data[last + 1:]
        text = data[:last].decode("utf-8", "replace")
        lines = text.split("\n")
        if "\r" in text:
            lines = [line.rstrip("\r") for line in lines]
        yield lines, offset
        offset += last + 1


#: An entry as ``_run`` takes it: its text (one line) or its lines, and the joiner's tags.
Item = tuple[str | list[str], list[str]]


def _entries(stream: BinaryIO, multiline: str, advance: Callable[[int], object] | None = None
             ) -> Iterator[list[Item]]:
    """The entries each read completes, a list per read: the output is written a read at a time.

    Without joining, each line is an entry as it is: no Entry object (offsets, resume point)
    is made for it, which was a twentieth of the command's time.
    """
    if multiline == "none":
        no_tags: list[str] = []
        for lines, _ in _lines(stream, advance):
            yield [(line, no_tags) for line in lines]
        return
    joiner = make_joiner(multiline)
    for lines, offset in _lines(stream, advance):
        # Offsets only order the entries here (nothing is checkpointed): line starts by characters.
        offsets = list(accumulate((len(line) + 1 for line in lines), initial=offset))
        yield [(e.lines, e.tags) for e in joiner.feed_many(lines, offsets[:-1], offsets[1:])]
    yield [(e.lines, e.tags) for e in joiner.flush()]


@main.command("parse")
@click.option("--type", "-t", "type_", default="", metavar="T",
              help="Built-in type: openstack (oslo.log), json, syslog, swift, haproxy, keepalived, pacemaker, ceph, "
                   "memcached, rabbitmq, mariadb, apache, wsgi-access, apache-error, nginx, libvirt, ovs.")
@click.option("--pattern", "-p", "patterns", multiple=True, metavar="GROK",
              help="Your own grok expression; repeat for a match list tried in order (replaces --type's).")
@click.option("--patterns-dir", "patterns_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of pattern files in Logstash's format (NAME regex per line); repeatable.")
@click.option("--multiline", type=click.Choice(["python", "none"]), default="none", show_default=True,
              help="Join multi-line entries: python joins oslo.log tracebacks (and RabbitMQ's old reports).")
@click.option("--timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds one entry may spend in grok before it is tagged _groktimeout.")
@click.option("--component", default="", help="Component to set on every event (e.g. nova).")
@click.option("--config", "-c", "config", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Take the parse section of this daemon config: patterns_dirs, timezone, steps, syslog_programs.")
@click.option("--now", "redate", is_flag=True,
              help="Move every event's time so the newest is now, keeping their spacing (to try sample logs).")
@click.option("--send", is_flag=True, help="Post the events to the API at --url (stored and searchable) instead of "
                                           "printing them.")
@api_options
@click.argument("source", default="-", metavar="[FILE|-]")
def parse_cmd(type_: str, patterns: tuple[str, ...], patterns_dirs: tuple[str, ...], multiline: str,
              timeout: float, component: str, config: str | None, redate: bool, send: bool, url: str,
              token: str | None, source: str) -> None:
    """Parse log lines into events: one JSON object per event on stdout (steps applied, drops left out)."""
    if not type_ and not patterns:
        fail("give --type (a built-in pattern set) or at least one --pattern")
    types = () if patterns else (type_,)  # compile only what this run uses (--pattern replaces the type's)
    try:
        if config is not None:
            from telemetry.config import ConfigError, load_config

            try:
                cfg = load_config(config).parse
            except ConfigError as exc:
                fail(str(exc))
            cfg = cfg.model_copy(update={"patterns_dirs": [*cfg.patterns_dirs, *patterns_dirs], "timeout": timeout})
            parser = Parser.from_config(cfg, patterns=patterns, types=types)
        else:
            parser = Parser(patterns_dirs=patterns_dirs, patterns=patterns, timeout=timeout, types=types)
    except (GrokError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if type_ and not patterns and parser.library.typedef(type_) is None:
        fail(f"unknown type {type_!r}; known: {', '.join(parser.types)}")
    fields = {"component": component} if component else {}
    tune_for_daemon()  # a pass over a big file allocates per line as the daemon does (telemetry.gctune)
    out: IO[bytes] | None = None  # None: standard output
    if redate or send:
        out = cast(IO[bytes], _Collected(redate, ApiClient(url, token) if send else None))
    if source == "-":
        _run(parser, _entries(sys.stdin.buffer, multiline), type_, fields, out)
        _finish(out)
        return
    try:
        size = os.path.getsize(source)
        stream: BinaryIO = open(source, "rb")
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror or exc}")
    with stream:
        fields["path"] = os.path.abspath(source)
        if size < PROGRESS_BYTES or not err.is_terminal:
            _run(parser, _entries(stream, multiline), type_, fields, out)
            _finish(out)
            return
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), console=console_of(err), transient=True) as bar:
            task = bar.add_task(os.path.basename(source), total=size)
            _run(parser, _entries(stream, multiline, lambda n: bar.advance(task, n)), type_, fields, out)
        _finish(out)


def _run(parser: Parser, batches: Iterator[list[Item]], type_: str, fields: dict, out: IO[bytes] | None) -> None:
    """Events as JSON lines to ``out``, or to standard output (None).

    One write per read of the input: a pipe written 8 KB at a time (the buffer's size) cost a
    third of the run in system time and wake-ups; a terminal still sees each read's events at once.
    Standard output is written by ``write_all``, never through the buffered writer: the time
    budget's SIGALRM interrupts writes to a full pipe, and the buffered writer then lost data.
    Each event's JSON is appended to the read's buffer at once, not kept until a join: orjson
    allocates its output larger and shrinks it, and a few thousand such objects kept alive at once
    had glibc fault in a fresh page for most of them (0.6 µs a line of 11, docs/parsing.md).
    """
    write: Callable[[bytes | bytearray], object]
    if out is not None:
        write = out.write
    else:
        sys.stdout.flush()
        try:
            fd = sys.stdout.fileno()
            roomy_pipe(fd)  # a read's events (a megabyte and more) in one write, not sixteen waits for the reader
            write = lambda data: write_all(fd, data)  # noqa: E731
        except (AttributeError, OSError, ValueError):  # no descriptor (an embedding, a test's runner)
            out = sys.stdout.buffer
            write = out.write
    dumps, newline, parse = orjson.dumps, orjson.OPT_APPEND_NEWLINE, parser.parse_dict
    plain = {**fields, "tags": []}  # shared by the entries the joiner tagged nothing: only read
    with armed():  # one time budget for the whole run: the fast engine
        for entries in batches:
            chunk = bytearray()
            for text, tags in entries:
                # parse_dict(text, type, fields, event_id="", now=None, with_id=False), by position: per line
                d = parse(text, type_, {**fields, "tags": tags} if tags else plain, "", None, False)
                if d is not None:  # None: a drop step
                    chunk += dumps(d, None, newline)
            if chunk:
                write(chunk)
    if out is not None:
        out.flush()


def _finish(out: IO[bytes] | None) -> None:
    """Print or send what --now/--send collected; stdout itself stays open."""
    if isinstance(out, _Collected):
        out.close()


#: Events per POST /v1/events request with --send.
SEND_BATCH = 500


class _Collected(io.RawIOBase):
    """Where ``_run`` writes with --now or --send: the events are kept, re-dated, then printed or posted."""

    def __init__(self, redate: bool, client: ApiClient | None) -> None:
        super().__init__()
        self.redate = redate
        self.client = client
        self.events: list[dict[str, Any]] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.events += map(orjson.loads, bytes(b).splitlines())  # JSON lines: no raw newline inside one
        return len(b)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        events = self.events
        if self.redate:
            _redate(events)
        if self.client is None:
            for ev in events:
                sys.stdout.buffer.write(orjson.dumps(ev, option=orjson.OPT_APPEND_NEWLINE))
            sys.stdout.buffer.flush()
            return
        import socket

        for ev in events:  # stored events name their host; a file read here was this host's
            ev["host"] = ev.get("host") or socket.gethostname()
        for i in range(0, len(events), SEND_BATCH):
            self.client.request("POST", "/v1/events", json=events[i:i + SEND_BATCH])
        err.print(f"sent {len(events)} events to {self.client.url}", highlight=False)
        _wait_stored(self.client, events)


#: How long --send waits for the events it sent to be searchable (they are stored by the server's stage).
SEND_WAIT = 10.0


def _wait_stored(client: ApiClient, events: list[dict[str, Any]]) -> None:
    """Return once the sent events can be found, so the next command (a search) sees them."""
    import time

    paths = sorted({str(ev["path"]) for ev in events if ev.get("path")})
    times = sorted(str(ev["@timestamp"]) for ev in events if ev.get("@timestamp"))
    if not times or len(paths) != 1:
        return
    q = f'path:"{paths[0]}"'
    deadline = time.monotonic() + SEND_WAIT
    while time.monotonic() < deadline:
        found = client.get("/v1/events", q=q, start=times[0], limit=len(events))
        if len(found) >= len(events):
            return
        time.sleep(0.2)
    err.print(f"the events are not searchable yet after {SEND_WAIT:g}s (the server stores them from its bus)",
              highlight=False)


def _redate(events: list[dict[str, Any]]) -> None:
    """Shift every ``@timestamp`` by one amount so the newest is now (ids follow, so a re-run is new data)."""
    from telemetry.timeutil import parse_timestamp, utcnow

    times = [parse_timestamp(ev["@timestamp"]) for ev in events if ev.get("@timestamp")]
    if not times:
        return
    shift = utcnow() - max(times)
    for ev in events:
        if ev.get("@timestamp"):
            ev["@timestamp"] = (parse_timestamp(ev["@timestamp"]) + shift).isoformat().replace("+00:00", "Z")
