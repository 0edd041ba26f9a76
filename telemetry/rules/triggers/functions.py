"""Item history fed by samples, and the Zabbix functions evaluated over it.

Mapping (documented in docs/rules.md): a sample is an observation of item
``(host, key)`` where ``key`` is the sample's meter name (``counter_name``)
and ``host`` is ``resource_metadata.host``, falling back to ``resource_id``.
Only items some trigger reads are kept, each for as long as the longest
window reading it, so history stays small whatever the sample rate.
"""

from __future__ import annotations

import bisect
import operator
import re
from collections import deque
from typing import Any

from telemetry.rules.triggers.expression import SUFFIX, Call, ItemRef, Node

MAX_POINTS = 20_000


class Unsupported(Exception):
    """The function cannot be computed now (no data yet): Zabbix's "unknown" state."""


def seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw]?)", text.strip())
    if not m:
        raise ValueError(f"not a Zabbix time period: {text!r} (use e.g. 30s, 5m, 1h)")
    return float(m.group(1)) * (SUFFIX[m.group(2)] if m.group(2) else 1)


def window_of(param: str) -> tuple[str, float, float]:
    """``5m`` -> ("time", 300, 0); ``#3`` -> ("count", 3, 0); ``1h:now-1d`` -> ("time", 3600, 86400)."""
    period, _, shift = param.partition(":")
    offset = 0.0
    if shift:
        m = re.fullmatch(r"now(?:-(\w+))?", shift.strip())
        if not m:
            raise ValueError(f"unsupported time shift {shift!r} (use now-1h, now-1d)")
        offset = seconds(m.group(1)) if m.group(1) else 0.0
    if period.startswith("#"):
        return "count", float(int(period[1:])), offset
    return "time", seconds(period), offset


def max_window(call: Call) -> float:
    """Seconds of history this call needs (count windows get a generous hour)."""
    if call.func in ("last", "change", "diff", "nodata") or not call.params:
        return seconds(call.params[0]) if call.func == "nodata" and call.params else 0.0
    kind, length, offset = window_of(call.params[0])
    return (3600.0 if kind == "count" else length) + offset


class ItemHistory:
    def __init__(self) -> None:
        self.points: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self.keep: dict[tuple[str, str], float] = {}
        self.arrived: dict[tuple[str, str], float] = {}

    def want(self, item: ItemRef, seconds_: float) -> None:
        key = (item.host, item.key)
        self.keep[key] = max(self.keep.get(key, 0.0), seconds_, 1.0)
        self.points.setdefault(key, deque())

    def add(self, host: str, key: str, ts: float, value: float, now: float) -> bool:
        series = self.points.get((host, key))
        if series is None:
            return False
        if series and ts < series[-1][0]:
            # Out of order: insert in place (rare; keeps windows exact).
            items = list(series)
            bisect.insort(items, (ts, value))
            series.clear()
            series.extend(items)
        else:
            series.append((ts, value))
        self.arrived[(host, key)] = now
        horizon = now - self.keep[(host, key)] - 60
        while len(series) > 2 and (series[0][0] < horizon or len(series) > MAX_POINTS):
            series.popleft()
        return True

    def values(self, item: ItemRef, param: str | None, now: float) -> list[float]:
        series = self.points.get((item.host, item.key)) or deque()
        if not param:
            return [series[-1][1]] if series else []
        kind, length, offset = window_of(param)
        end = now - offset
        if kind == "count":
            pts = [v for t, v in series if t <= end]
            return pts[-int(length):]
        return [v for t, v in series if end - length < t <= end]


_CMP = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge, "lt": operator.lt,
        "le": operator.le, "like": lambda a, b: str(b) in str(a), "regexp": lambda a, b: re.search(str(b), str(a))}


def call(history: ItemHistory, c: Call, now: float, started: float) -> float:
    item, p = c.item, c.params
    if c.func == "nodata":
        if not p:
            raise ValueError("nodata needs a period, e.g. nodata(/host/key,3m)")
        period = seconds(p[0])
        last = history.arrived.get((item.host, item.key))
        if last is None:
            return 1.0 if now - started >= period else 0.0
        return 1.0 if now - last >= period else 0.0
    series = history.points.get((item.host, item.key)) or deque()
    if c.func in ("change", "diff"):
        if len(series) < 2:
            raise Unsupported(f"{c.func} needs two values of {item.key} on {item.host}")
        last, prev = series[-1][1], series[-2][1]
        return last - prev if c.func == "change" else float(last != prev)
    if c.func == "last":
        n = int(p[0][1:]) if p and p[0].startswith("#") else 1
        if len(series) < n:
            raise Unsupported(f"no value #{n} of {item.key} on {item.host}")
        return series[-n][1]
    if not p:
        raise ValueError(f"{c.func} needs a period, e.g. {c.func}(/host/key,5m)")
    vals = history.values(item, p[0], now)
    if c.func == "count":  # count(/host/key,period[,operator[,pattern]])
        if len(p) < 2 or (not p[1] and (len(p) < 3 or not p[2])):
            return float(len(vals))
        op = _CMP.get(p[1] or "eq")
        if op is None:
            raise ValueError(f"count operator {p[1]!r} is not one of {', '.join(_CMP)}")
        pattern: Any = p[2] if len(p) > 2 else ""
        if p[1] not in ("like", "regexp"):
            pattern = float(pattern)
        return float(sum(1 for v in vals if op(v, pattern)))
    if not vals:
        raise Unsupported(f"no values of {item.key} on {item.host} in {p[0]}")
    if c.func == "avg":
        return sum(vals) / len(vals)
    if c.func == "min":
        return min(vals)
    if c.func == "max":
        return max(vals)
    return sum(vals)


def evaluate(node: Node, history: ItemHistory, now: float, started: float) -> float:
    """Zabbix semantics: comparisons and logic yield 1 or 0; division by zero is unknown."""
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "str":
        raise ValueError("a string is only allowed as a function parameter")
    if kind == "call":
        return call(history, node[1], now, started)
    if kind == "neg":
        return -evaluate(node[1], history, now, started)
    if kind == "not":
        return float(evaluate(node[1], history, now, started) == 0)
    if kind in ("and", "or"):
        # Zabbix: "unknown" on one side may be decided by the other side.
        try:
            left: float | None = evaluate(node[1], history, now, started)
        except Unsupported:
            left = None
        if kind == "and" and left == 0:
            return 0.0
        if kind == "or" and left not in (None, 0):
            return 1.0
        right = evaluate(node[2], history, now, started)
        if left is None:
            if (kind == "and" and right == 0) or (kind == "or" and right != 0):
                return float(kind == "or")
            raise Unsupported("unknown operand")
        return float(bool(left) and bool(right)) if kind == "and" else float(bool(left) or bool(right))
    a = evaluate(node[1], history, now, started)
    b = evaluate(node[2], history, now, started)
    if kind == "/":
        if b == 0:
            raise Unsupported("division by zero")
        return a / b
    ops = {"+": operator.add, "-": operator.sub, "*": operator.mul, "=": lambda x, y: float(abs(x - y) < 1e-9),
           "<>": lambda x, y: float(abs(x - y) >= 1e-9), "<": lambda x, y: float(x < y),
           "<=": lambda x, y: float(x <= y), ">": lambda x, y: float(x > y), ">=": lambda x, y: float(x >= y)}
    return float(ops[kind](a, b))
