"""The text a regular expression cannot match without: a pre-filter before the engine runs.

An oslo.log type tries its API access expressions on every message, and nearly
every message is no access line: the attempt (a budgeted match through Python)
cost a line more than a microsecond to learn nothing. Every match of
``OSLO_ACCESS`` contains ``status: ``, ``] "``, ``://`` or another literal of its
alternatives, and ``in`` finds none of them at C speed; the engine runs only
when one is there. Hyperscan and RE2 filter the same way, by literals
extracted from the parsed expression.

The analysis walks the stdlib parser's tree. A sequence needs what any of its
items needs (the most selective is kept); an alternation needs one of what
each branch needs; a repeat needs what its body needs only when it runs at
least once. Anything the walk does not understand needs nothing, so a filter
can only ever be too permissive, never reject a line the expression matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from re import _constants as C  # type: ignore[attr-defined]  # the stdlib parser (Python 3.11+)
from re import _parser as P  # type: ignore[attr-defined]

__all__ = ["holds_one", "literals_of_any", "required_literals"]

#: Literals shorter than this filter little and cost a search each.
MIN_LENGTH = 3
#: More alternatives than this cost more to look for than the match attempt they save.
MAX_ALTERNATIVES = 8

Need = frozenset[str] | None  # one of these must occur; None: nothing known


def _usable(need: frozenset[str]) -> bool:
    return min(map(len, need)) >= MIN_LENGTH and len(need) <= MAX_ALTERNATIVES


def _better(a: Need, b: Need) -> Need:
    """The more selective of two requirements: one worth looking for (``_usable``), then the longer
    shortest literal, then fewer alternatives. Usable first: nine long alternatives must not push
    out a single literal of three that the filter can use."""
    if a is None:
        return b
    if b is None:
        return a
    ka, kb = (_usable(a), min(map(len, a)), -len(a)), (_usable(b), min(map(len, b)), -len(b))
    return b if kb > ka else a


def _one_of(needs: Iterable[Need]) -> Need:
    """What alternatives need: a text matching any of them holds one of its literals, so one of all
    of theirs; nothing known when one of them needs nothing."""
    out: frozenset[str] = frozenset()
    for need in needs:
        if need is None:
            return None
        out |= need
    return out


def _sequence(items: Any) -> Need:
    best: Need = None
    run: list[str] = []
    for op, av in items:
        if op is C.LITERAL:
            run.append(chr(av))
            continue
        if op is C.AT:  # zero-width (^, $, \b): the text on either side is still contiguous
            continue
        if run:
            best = _better(best, frozenset({"".join(run)}))
            run = []
        best = _better(best, _item(op, av))
    if run:
        best = _better(best, frozenset({"".join(run)}))
    return best


def _item(op: Any, av: Any) -> Need:
    if op is C.SUBPATTERN:
        _group, add_flags, _del_flags, body = av
        return None if add_flags & C.SRE_FLAG_IGNORECASE else _sequence(body)
    if op is C.BRANCH:
        return _one_of(_sequence(branch) for branch in av[1])
    if op in (C.MAX_REPEAT, C.MIN_REPEAT) or op is getattr(C, "POSSESSIVE_REPEAT", None):
        low, _high, body = av
        return _sequence(body) if low >= 1 else None
    if op is getattr(C, "ATOMIC_GROUP", None):
        return _sequence(av)
    return None  # classes, any, back-references, look-arounds, conditionals: no literal known


def required_literals(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Literals of which every match of ``pattern`` contains at least one; None when there is no
    useful set (none found, too short, too many, or case folded)."""
    if pattern.flags & re.IGNORECASE:
        return None
    try:
        need = _sequence(P.parse(pattern.pattern, pattern.flags & ~re.UNICODE))
    except (re.error, RecursionError, OverflowError):
        return None
    if need is None or not _usable(need):
        return None
    return tuple(sorted(need, key=len, reverse=True))


def literals_of_any(needs: Iterable[tuple[str, ...] | None]) -> tuple[str, ...] | None:
    """What a list of expressions tried in turn (a type's message_match) needs, from each one's
    ``required_literals``: the same rule as an alternation inside one expression."""
    need = _one_of(None if n is None else frozenset(n) for n in needs)
    return tuple(sorted(need, key=len, reverse=True)) if need else None


def holds_one(text: str, literals: tuple[str, ...]) -> bool:
    """Whether ``text`` holds one of ``literals`` (what ``required_literals`` gives): a loop, not
    ``any(map(text.__contains__, ...))``, which took twice as long on every line of a type."""
    for literal in literals:
        if literal in text:
            return True
    return False
