"""Limits on values that enter from outside: nesting depth, the number of fields, and leaves a store takes.

A Ceilometer datagram nested 300 deep passed validation and then broke the
JSON encoder of every stage it reached; a 990-deep msgpack list overflowed
Python's recursion in the model. Inputs check what they decode here, once,
before anything else touches it, and refuse with a reason that names the
limit (counted as a rejection by the input). The walk is iterative: a hostile
document cannot make the check itself recurse. Leaves are checked on the way
too: a 26-digit integer, NaN, 1e400 or a lone surrogate passed validation
and then failed in the encoder or the database, after being accepted.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

#: Deepest nesting of objects and lists accepted in a record (metadata, payloads, events).
MAX_DEPTH = 32
#: Most values (keys and list items, all levels together) accepted in one record.
MAX_VALUES = 100_000


#: Integers every store and encoder takes (SQLite, PostgreSQL bigint, msgpack, orjson): signed or unsigned 64-bit.
INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1


class TooComplex(ValueError):
    """A decoded value nests deeper, or holds more values, than a record may, or holds a value no store takes."""


def _scalar_problem(item: Any) -> str | None:
    """Why a leaf cannot be stored: a 26-digit integer, NaN or 1e400, a lone surrogate (``"\\ud800"``)."""
    if isinstance(item, str):
        if not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "holds an unpaired surrogate (\\ud800-\\udfff), which is not Unicode text"
    elif isinstance(item, bool):
        return None
    elif isinstance(item, int):
        if not INT_MIN <= item <= INT_MAX:
            return "is an integer beyond 64 bits"
    elif isinstance(item, float) and not math.isfinite(item):
        return "is not a finite number (NaN or infinity)"
    return None


def _where(value: Any, bad: Any) -> str:
    """The path (``a.b[2]``) of the first node that is ``bad``; walked again only when something was wrong."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if item is bad:
            return path
        if isinstance(item, Mapping):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in item.items())
            if any(k is bad for k in item):
                return path
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
    return ""


def check_shape(value: Any, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> None:
    """Raise TooComplex when ``value`` nests deeper than ``max_depth``, holds more than ``max_values`` values,
    or holds a leaf no store takes; the message names the field (``metadata.disk[3]``)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
            for k in item:
                if isinstance(k, str) and not k.isascii() and (why := _scalar_problem(k)):
                    raise TooComplex(_named(value, item, f"has a key that {why}"))
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            why = _scalar_problem(item)
            if why:
                raise TooComplex(_named(value, item, why))
            continue
        if depth >= max_depth:
            raise TooComplex(f"nested deeper than {max_depth} levels")
        seen += len(children)
        if seen > max_values:
            raise TooComplex(f"holds more than {max_values} values")
        stack.extend((c, depth + 1) for c in children)


def _named(value: Any, bad: Any, why: str) -> str:
    where = _where(value, bad)
    return f"{where} {why}" if where else why


class PeerRateLimit:
    """A token bucket per sending address: ``rate`` messages a second, bursts of ``burst``.

    One chatty or hostile sender then cannot take the whole input (and the
    bus, and the store) from the others: its excess is dropped and counted
    by the input, the others go on. Senders are forgotten oldest first past
    ``max_peers``, so spoofed UDP sources cannot grow the table without end.
    """

    def __init__(self, rate: float, burst: float, max_peers: int = 10_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_peers = max_peers
        # Ordered least recently seen first; an OrderedDict, as telemetry.recent explains.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, peer: str, now: float) -> bool:
        tokens, last = self._buckets.pop(peer, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if len(self._buckets) >= self.max_peers:
            self._buckets.popitem(last=False)
        self._buckets[peer] = (tokens, now)  # re-inserted: the order is least recently seen first
        return allowed
