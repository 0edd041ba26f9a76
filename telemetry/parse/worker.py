"""Parsing in a child process (``parse.workers: 1``, the default), beside the daemon's own core.

Grok is pure Python-held CPU (``re`` keeps the GIL), the largest share of the
daemon's work per log line after the store; in the daemon's process it left
the second core to the store alone. The parse stage hands each batch to this
child (``telemetry.workerproc``) and publishes what comes back, so the stage's
contract is unchanged: the RawLogs are acknowledged once their events are
durable downstream; a record that cannot be parsed comes back as its reason and
is dead-lettered alone; a child lost mid-batch fails the batch with
``WorkerGone`` and the stage retries it with a new child.

The child builds its parser from the same ``parse`` section (sent as JSON), so
patterns, types, steps and the time budget are the same as in the daemon; its
SIGALRM budget runs in the child's own main thread.
"""

from __future__ import annotations

import marshal
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import msgpack
import orjson

from telemetry.config.parse import ParseConfig
from telemetry.models import RawLog
from telemetry.parse.parser import outcome_of
from telemetry.workerproc import ChildProcess, serve_stdio

if TYPE_CHECKING:
    from telemetry.parse.parser import Parser

__all__ = ["Encoded", "Item", "ParseWorker", "Parsed", "encode_event", "encoded", "item", "parsed"]

#: An event a worker encoded for a broker (``ParseWorker.parse`` with ``fmt``): its bytes, its key (the
#: host), its type and grok's outcome, what the stage publishes and counts.
Encoded = tuple[bytes, str, str, str]
#: One entry's result: its event (the contract dict, or ``Encoded``), (its type,) when a drop step discarded
#: it (a worker names the type: it may have decoded the entry itself), or why it could not be parsed.
Parsed = dict[str, Any] | Encoded | tuple[str] | str
_Args = tuple[str, str, str, str, str, int, int, list[str], "int | datetime", list[str], dict[str, Any] | None]
#: An entry as the stage hands it over: the bus's bytes (decoded in the worker), or a RawLog's values
#: (``read_at`` as integer microseconds since the epoch when it is UTC, so the batch stays marshal's).
Item = bytes | _Args
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def item(raw: RawLog | bytes, last: list[Any]) -> Item:
    """The bytes as they came off the bus, or a RawLog's values (parsed without rebuilding the model): plain values
    cross to the worker many times faster than the model, and faster than its JSON is decoded there.

    ``last`` is the batch's [read_at, its microseconds]: the entries of one read share their read_at,
    converted once (``_instant`` is the way back).
    """
    if isinstance(raw, bytes):
        return raw
    d = raw.__dict__
    read_at = d["read_at"]
    if read_at.tzinfo is timezone.utc:
        if last[0] is not read_at:
            last[:] = [read_at, (read_at - _EPOCH) // _MICROSECOND]
        read_at = last[1]
    extra = raw.__pydantic_extra__
    return (d["id"], d["host"], d["path"], d["component"], d["type"], d["offset"], d["inode"], d["lines"],
            read_at, d["tags"], extra or None)


def _instant(read_at: int | datetime, last: list[Any]) -> datetime:
    """``item``'s read_at back as the aware datetime (an entries' batch shares a few: the last is kept)."""
    if read_at.__class__ is not int:
        return read_at  # type: ignore[return-value]
    if last[0] != read_at:
        last[:] = [read_at, _EPOCH + timedelta(microseconds=read_at)]
    return last[1]


#: What ``Parser.parse_values`` takes: a RawLog's values, as a worker rebuilds them from an ``Item``.
Values = tuple[str, str, str, str, str, list[str], datetime, list[str], "dict[str, Any] | None"]


def encode_event(event: dict[str, Any], fmt: str) -> bytes:
    """As ``telemetry.models.encode`` does for an Event (its to_dict is this dict)."""
    if fmt == "msgpack":
        return msgpack.packb(event, use_bin_type=True)
    return orjson.dumps(event)


def encoded(result: Parsed, fmt: str) -> Parsed:
    """An event's result as published on a broker: a worker returns it so, encoded where the work is, not
    by the daemon's event loop (which would take the dict apart from marshal only to encode it); a reason
    if it cannot be encoded."""
    if result.__class__ is not dict:
        return result
    event: dict[str, Any] = result
    try:
        value = encode_event(event, fmt)
    except Exception as exc:
        return f"unparseable:{type(exc).__name__}"
    return value, event["host"], event["type"], outcome_of(event["tags"])


def parsed(parser: Parser, raw: RawLog | Values) -> Parsed:
    """One entry's result, in the daemon or in a worker (the caller arms the time budget for the batch)."""
    try:
        if isinstance(raw, RawLog):
            type_, ev = raw.type, parser.parse_raw_dict(raw)
        else:  # a worker's entry: no RawLog is built for it
            type_, ev = raw[4], parser.parse_values(*raw)
    except Exception as exc:  # the stage dead-letters this one with the reason; the rest go on
        return f"unparseable:{type(exc).__name__}"
    return ev if ev is not None else (type_,)


class ParseWorker:
    """The daemon's side: one child, batches in order."""

    def __init__(self, cfg: ParseConfig) -> None:
        self.child = ChildProcess("parse worker", "telemetry.parse.worker",
                                  [cfg.model_dump_json(by_alias=True, exclude_unset=True)])
        self.budget = cfg.timeout

    def _call(self, op: str, raws: Sequence[RawLog | bytes], *args: Any, ticket: int | None = None) -> Any:
        # A batch of entries that each use their whole time budget is slow, not lost: the wait for the
        # answer allows for it, so only a worker that is really gone is taken for lost.
        last: list[Any] = [None, 0]
        return self.child.call(op, [item(r, last) for r in raws], *args,
                               timeout=self.child.timeout + 2 * self.budget * len(raws), ticket=ticket)

    def parse(self, raws: Sequence[RawLog | bytes], fmt: str | None = None, ticket: int | None = None
              ) -> list[Parsed]:
        """Each entry's result; with ``fmt`` (a broker's wire format) each event comes ``Encoded``.
        ``ticket``: the call's place in the child's order (``ChildProcess.in_order``)."""
        result: list[Parsed] = self._call("parse", raws, fmt, ticket=ticket)
        return result

    def parse_packed(self, raws: Sequence[RawLog | bytes], ticket: int | None = None
                     ) -> tuple[list[Parsed], bytes | None]:
        """``parse`` for the bus in this process, with the batch's events also as the child marshalled them
        (one list, in order): the event stage hands those bytes to the store's writer process as they are,
        instead of encoding the same dicts again on the daemon's core. None when they could not be.
        """
        results, packed = self._call("parse_packed", raws, ticket=ticket)
        if packed is None:
            return results, None
        events = marshal.loads(packed)
        if results is None:  # every entry became an event (the usual batch)
            return events, packed
        it = iter(events)
        return [next(it) if r is None else r for r in results], packed

    def close(self) -> None:
        self.child.close()


def main() -> None:
    from telemetry.gctune import tune_for_daemon
    from telemetry.fastcodec import decode_record, rawlog_values
    from telemetry.models import derived_id
    from telemetry.parse import budget
    from telemetry.parse.parser import Parser
    from telemetry.stage import reject_reason

    parser = Parser.from_config(ParseConfig.model_validate_json(sys.argv[1]))
    tune_for_daemon()  # a long-running process of the daemon's, allocating per line as the daemon does

    def parse(items: list[Item], fmt: str | None = None) -> list[Parsed]:
        out: list[Parsed] = []
        last: list[Any] = [None, None]
        with budget.armed():
            for it in items:
                if isinstance(it, bytes):
                    values: _Args | None = rawlog_values(it)  # a broker's bytes: their values, no model built
                    if values is None:  # what the model must decide, and name the reason of
                        try:
                            raw = decode_record(RawLog, it)
                        except Exception as exc:  # bad input: dead-lettered with the reason the stage gives
                            out.append(reject_reason(exc))
                            continue
                        out.append(parsed(parser, raw))
                        continue
                else:
                    values = it
                id_, host, path, component, type_, offset, inode, lines, read_at, tags, extra = values
                out.append(parsed(parser, (id_ or derived_id("rawlog", host, inode, offset), host, path,
                                           component, type_, lines, _instant(read_at, last), tags, extra)))
        return [encoded(r, fmt) for r in out] if fmt else out

    def parse_packed(items: list[Item]) -> tuple[list[Parsed | None] | None, bytes | None]:
        # Each event's place is None in the results, its dict in the pack: it crosses once. No
        # results at all when every entry became an event.
        out = parse(items)
        events = [r for r in out if r.__class__ is dict]
        try:
            packed = marshal.dumps(events)
        except ValueError:  # a value marshal cannot carry: the events cross in the results, as ``parse`` gives them
            return list(out), None
        if len(events) == len(out):
            return None, packed
        return [None if r.__class__ is dict else r for r in out], packed

    serve_stdio({"parse": parse, "parse_packed": parse_packed}, "telemetry parse worker")


if __name__ == "__main__":
    main()
