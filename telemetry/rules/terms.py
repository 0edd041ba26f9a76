"""Aodh's query terms (``{field, op, value}``, ANDed): one evaluation for every kind of alarm.

Threshold alarms test samples, event alarms test notification documents, and
the API filters alarm definitions; each brings its own way to read a field
(``getter``), the comparison is the same: numbers compare as numbers when the
value read is a number, everything else as text, as Aodh's evaluators do.
A missing field matches only ``ne`` (as in Ceilometer's and MongoDB's queries).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any, Protocol

COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt, "le": operator.le, "eq": operator.eq, "ne": operator.ne, "ge": operator.ge, "gt": operator.gt,
}


class Term(Protocol):
    """Anything with a field, an operator and a value (Aodh's QueryItem, an API filter)."""

    @property
    def field(self) -> str: ...

    @property
    def op(self) -> str: ...

    @property
    def value(self) -> Any: ...


def coerce(have: Any, want: Any) -> tuple[Any, Any]:
    """Both as floats when ``have`` is a number and ``want`` reads as one; else both as text."""
    if isinstance(have, (int, float)) and not isinstance(have, bool):
        try:
            return float(have), float(want)
        except (TypeError, ValueError):
            pass
    if isinstance(have, bool):
        return str(have).lower(), str(want).lower()
    return str(have), str(want)


def compile_terms(terms: Sequence[Term], getter: Callable[[Any, str], Any]) -> Callable[[Any], bool]:
    """One predicate for all ``terms``: ``getter(thing, field)`` reads a field, None when absent."""
    if not terms:
        return lambda _: True
    tests = [(t.field, COMPARE[t.op], t.value) for t in terms]
    ne = COMPARE["ne"]

    def match(thing: Any) -> bool:
        for field, cmp, want in tests:
            have = getter(thing, field)
            if have is None:
                if cmp is ne:
                    continue
                return False
            a, b = coerce(have, want)
            if not cmp(a, b):
                return False
        return True

    return match
