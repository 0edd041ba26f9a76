"""Limits on values that enter from outside: nesting depth and the number of fields.

A Ceilometer datagram nested 300 deep passed validation and then broke the
JSON encoder of every stage it reached; a 990-deep msgpack list overflowed
Python's recursion in the model. Inputs check what they decode here, once,
before anything else touches it, and refuse with a reason that names the
limit (counted as a rejection by the input). The walk is iterative: a hostile
document cannot make the check itself recurse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Deepest nesting of objects and lists accepted in a record (metadata, payloads, events).
MAX_DEPTH = 32
#: Most values (keys and list items, all levels together) accepted in one record.
MAX_VALUES = 100_000


class TooComplex(ValueError):
    """A decoded value nests deeper, or holds more values, than a record may."""


def check_shape(value: Any, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> None:
    """Raise TooComplex when ``value`` nests deeper than ``max_depth`` or holds more than ``max_values`` values."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= max_depth:
            raise TooComplex(f"nested deeper than {max_depth} levels")
        seen += len(children)
        if seen > max_values:
            raise TooComplex(f"holds more than {max_values} values")
        stack.extend((c, depth + 1) for c in children)
