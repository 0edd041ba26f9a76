"""``/v1/aggregates`` operations: Gnocchi's small language over timeseries, parsed and evaluated.

``(aggregate mean (metric cpu mean))`` as text, or the same as a JSON list,
which is how Aodh sends it. Supported: ``metric`` (one reference or a list of
``(ref method)`` pairs), ``aggregate``, ``resample``, ``rolling``, the
arithmetic operators, ``abs``/``neg`` and ``clip_min``/``clip_max``: what
Aodh's Gnocchi alarms, Grafana's Gnocchi data source and the gnocchiclient
CLI send. Anything else is a 400 naming the operation.

Evaluation works on *sets* of labelled timeseries at one granularity: a
``metric`` node yields one series per reference, ``aggregate`` folds a set
into one series named ``aggregated``, the others apply point-wise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from telemetry.gnocchi.models import GnocchiError, valid_method
from telemetry.gnocchi.measures import Points, _reduce

#: A reference to a metric as written in an operation, and its method: (ref, method).
MetricRef = tuple[str, str]
#: Evaluated sets: label -> points (label: the reference's output path, or ("aggregated",)).
SeriesSet = dict[tuple[str, ...], Points]
Fetch = Callable[[MetricRef], dict[tuple[str, ...], Points]]

_TOKEN = re.compile(r"\s*(\(|\)|\"[^\"]*\"|'[^']*'|[^\s()]+)")
BINARY: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b, "add": lambda a, b: a + b, "-": lambda a, b: a - b, "sub": lambda a, b: a - b,
    "*": lambda a, b: a * b, "mul": lambda a, b: a * b, "/": lambda a, b: a / b if b else math.nan,
    "truediv": lambda a, b: a / b if b else math.nan, "**": lambda a, b: a ** b, "pow": lambda a, b: a ** b,
    "clip_min": lambda a, b: max(a, b), "clip_max": lambda a, b: min(a, b),
}
UNARY: dict[str, Callable[[float], float]] = {"abs": abs, "absolute": abs, "neg": lambda a: -a,
                                              "negative": lambda a: -a}


def parse(text: Any) -> Any:
    """A JSON list as is; a string as an S-expression (numbers become floats)."""
    if isinstance(text, list):
        return text
    if not isinstance(text, str):
        raise GnocchiError(400, {"cause": "Invalid operations", "reason": "operations must be a list or a string",
                                 "detail": []})
    tokens = _TOKEN.findall(text)
    pos = 0

    def read() -> Any:
        nonlocal pos
        if pos >= len(tokens):
            raise GnocchiError(400, {"cause": "Invalid operations", "reason": "unexpected end", "detail": []})
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            out = []
            while pos < len(tokens) and tokens[pos] != ")":
                out.append(read())
            if pos >= len(tokens):
                raise GnocchiError(400, {"cause": "Invalid operations", "reason": "missing )", "detail": []})
            pos += 1
            return out
        if tok == ")":
            raise GnocchiError(400, {"cause": "Invalid operations", "reason": "unexpected )", "detail": []})
        if tok[0] in "'\"":
            return tok[1:-1]
        try:
            return float(tok)
        except ValueError:
            return tok

    tree = read()
    if pos != len(tokens):
        raise GnocchiError(400, {"cause": "Invalid operations", "reason": "text after the expression", "detail": []})
    return tree


def references(tree: Any) -> list[MetricRef]:
    """Every ``(ref, method)`` the tree reads, in order."""
    if not isinstance(tree, list) or not tree:
        return []
    if tree[0] == "metric":
        args = tree[1:]
        if len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], str):
            pairs = [args]
        elif len(args) == 1 and isinstance(args[0], list) and all(isinstance(p, list) for p in args[0]):
            pairs = args[0]  # the pairs as one list: (metric ((a mean) (b mean)))
        else:
            pairs = args
        out = []
        for p in pairs:
            if not (isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)):
                raise GnocchiError(400, {"cause": "Invalid operations", "reason": "metric takes (ref method) pairs",
                                         "detail": [str(p)]})
            if not valid_method(p[1]):
                raise GnocchiError(400, {"cause": "Invalid operations",
                                         "reason": f"unknown aggregation method {p[1]!r}", "detail": [p[1]]})
            out.append((p[0], p[1]))
        return out
    found: list[MetricRef] = []
    for sub in tree[1:]:
        found.extend(references(sub))
    return found


class Evaluator:
    """Evaluates a parsed tree at one granularity; ``fetch`` reads a reference's series (one or several)."""

    def __init__(self, fetch: Fetch, granularity: float) -> None:
        self.fetch = fetch
        self.granularity = granularity

    def run(self, tree: Any) -> SeriesSet | float:
        if isinstance(tree, float):
            return tree
        if not isinstance(tree, list) or not tree or not isinstance(tree[0], str):
            raise GnocchiError(400, {"cause": "Invalid operations", "reason": "not an operation",
                                     "detail": [str(tree)]})
        op, args = tree[0], tree[1:]
        if op == "metric":
            out: SeriesSet = {}
            for ref in references(tree):
                out.update(self.fetch(ref))
            return out
        if op == "aggregate":
            return self._aggregate(args)
        if op in ("resample", "rolling"):
            if len(args) != 3 or not isinstance(args[0], str):
                raise GnocchiError(400, {"cause": "Invalid operations",
                                         "reason": f"{op} takes a method, a number and an operation", "detail": []})
            return (self._resample if op == "resample" else self._rolling)(args[0], args[1], self._set(args[2]))
        if op in UNARY and len(args) == 1:
            f1 = UNARY[op]
            return {k: {t: f1(v) for t, v in pts.items()} for k, pts in self._set(args[0]).items()}
        if op in BINARY and len(args) == 2:
            return self._binary(BINARY[op], self.run(args[0]), self.run(args[1]))
        raise GnocchiError(400, {"cause": "Invalid operations", "reason": f"operation {op!r} is not supported",
                                 "detail": [op]})

    def _set(self, tree: Any) -> SeriesSet:
        got = self.run(tree)
        if isinstance(got, float):
            raise GnocchiError(400, {"cause": "Invalid operations", "reason": "a timeseries is expected, not a number",
                                     "detail": []})
        return got

    def _aggregate(self, args: list[Any]) -> SeriesSet:
        if len(args) != 2 or not isinstance(args[0], str) or not valid_method(args[0]):
            raise GnocchiError(400, {"cause": "Invalid operations",
                                     "reason": "aggregate takes a method and an operation", "detail": []})
        method, sets = args[0], self._set(args[1])
        by_ts: dict[float, list[float]] = {}
        for pts in sets.values():
            for t, v in pts.items():
                by_ts.setdefault(t, []).append(v)
        if method.startswith("rate:"):  # the method across the series, then the rate of that
            merged = {t: _reduce(vs, method[5:]) for t, vs in sorted(by_ts.items())}
            ts = sorted(merged)
            return {("aggregated",): {t: merged[t] - merged[p] for p, t in zip(ts, ts[1:])}}
        return {("aggregated",): {t: _reduce([v for v in vs if not math.isnan(v)] or [math.nan], method)
                                  for t, vs in sorted(by_ts.items())}}

    def _resample(self, method: str, width: Any, sets: SeriesSet) -> SeriesSet:
        w = float(width)
        if w <= 0 or w % self.granularity:
            raise GnocchiError(400, {"cause": "Invalid operations",
                                     "reason": "resample's granularity must be a multiple of the granularity read",
                                     "detail": []})
        out: SeriesSet = {}
        for k, pts in sets.items():
            buckets: dict[float, list[float]] = {}
            for t in sorted(pts):
                buckets.setdefault(t // w * w, []).append(pts[t])
            out[k] = {t: _reduce(vs, method) for t, vs in buckets.items()}
        return out

    def _rolling(self, method: str, window: Any, sets: SeriesSet) -> SeriesSet:
        n = int(window)
        out: SeriesSet = {}
        for k, pts in sets.items():
            ts = sorted(pts)
            out[k] = {ts[i]: _reduce([pts[t] for t in ts[i - n + 1:i + 1]], method) for i in range(n - 1, len(ts))}
        return out

    @staticmethod
    def _binary(f: Callable[[float, float], float], a: SeriesSet | float, b: SeriesSet | float) -> SeriesSet:
        if isinstance(a, float) and isinstance(b, float):
            raise GnocchiError(400, {"cause": "Invalid operations", "reason": "two numbers", "detail": []})
        if isinstance(b, float):
            assert not isinstance(a, float)
            return {k: {t: f(v, b) for t, v in pts.items()} for k, pts in a.items()}
        if isinstance(a, float):
            return {k: {t: f(a, v) for t, v in pts.items()} for k, pts in b.items()}
        if len(a) == 1 and len(b) == 1:
            (ka, pa), (_, pb) = next(iter(a.items())), next(iter(b.items()))
            return {ka: {t: f(v, pb[t]) for t, v in pa.items() if t in pb}}
        return {k: {t: f(v, b[k][t]) for t, v in pa.items() if t in b.get(k, {})} for k, pa in a.items()}


def overlap_filter(sets: SeriesSet, needed_overlap: float, fill: float | str | None) -> SeriesSet:
    """Gnocchi's alignment of several series: keep the timestamps at least ``needed_overlap`` % of them
    share; with ``fill`` the missing points are filled (a number, ``null``) or dropped (``dropna``)."""
    if len(sets) < 2 and fill is None:
        return sets
    all_ts = sorted({t for pts in sets.values() for t in pts})
    if fill is not None and fill != "dropna":
        value = math.nan if fill == "null" else float(fill)
        return {k: {t: pts.get(t, value) for t in all_ts} for k, pts in sets.items()}
    if not sets:
        return sets
    keep = {t for t in all_ts if sum(t in pts for pts in sets.values()) * 100.0 / len(sets) >= needed_overlap}
    return {k: {t: v for t, v in pts.items() if t in keep} for k, pts in sets.items()}


def finite(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))) else float(v)


