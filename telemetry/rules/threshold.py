"""Threshold evaluation on in-memory sliding windows, with Aodh's state rule.

Aodh queries statistics every 60 s; we keep, per alarm (and per group when
``group_by`` is set), one small aggregate per period-aligned bucket and
evaluate when a sample lands, so a breach is seen at once. The state rule is
Aodh's: over the last ``evaluation_periods`` periods (with one period of
look-back for the one still filling), fewer datapoints than periods means
``insufficient data``; all breaching means ``alarm``; none breaching means
``ok``; a mix keeps the current state, so one noisy point cannot flap it
(an alarm with no state yet follows the most recent period).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from telemetry.rules.match import lookup
from telemetry.rules.terms import COMPARE, compile_terms
from telemetry.rules.models import ALARM, OK, UNKNOWN, QueryItem, ThresholdRule, TimeConstraint

SAMPLE_FIELDS = {"resource_id", "project_id", "user_id", "source", "counter_name", "counter_type", "counter_unit"}

Verdict = tuple[str, str, dict[str, Any]]


def sample_field(sample: Mapping[str, Any], field: str) -> Any:
    """A query field on a sample dict: plain fields, ``metadata.*`` / ``resource_metadata.*``.

    ``metadata.X`` also finds ``user_metadata.X``: Nova's ``metering.X``
    instance metadata reaches samples under ``user_metadata``, which is where
    Heat's server_group filter must look.
    """
    if field in SAMPLE_FIELDS:
        return sample.get(field)
    if field in ("meter", "counter_volume", "volume"):
        return sample.get("counter_name" if field == "meter" else "counter_volume")
    meta = sample.get("resource_metadata") or {}
    for prefix in ("metadata.", "resource_metadata."):
        if field.startswith(prefix):
            name = field[len(prefix):]
            value = lookup(meta, name)
            if value is None and not name.startswith("user_metadata."):
                value = lookup(meta, "user_metadata." + name)
            return value
    return lookup(sample, field)


def compile_sample_query(items: list[QueryItem]) -> Callable[[Mapping[str, Any]], bool]:
    """Aodh's query list (ANDed) as one predicate on a sample dict."""
    return compile_terms(items, sample_field)


class Window:
    """Per-period aggregates (count, sum, min, max) of one series; old buckets are pruned."""

    __slots__ = ("buckets", "last")

    def __init__(self) -> None:
        self.buckets: dict[int, list[float]] = {}
        self.last = 0.0

    def add(self, idx: int, value: float) -> None:
        b = self.buckets.get(idx)
        if b is None:
            self.buckets[idx] = [1, value, value, value, value]
        else:
            b[0] += 1
            b[1] += value
            if value < b[2]:
                b[2] = value
            if value > b[3]:
                b[3] = value
            b[4] = value

    def prune(self, oldest: int) -> None:
        for i in [i for i in self.buckets if i < oldest]:
            del self.buckets[i]


_STAT_INDEX = {"count": 0, "sum": 1, "min": 2, "max": 3}


def statistic(bucket: list[float], name: str) -> float:
    if name == "avg":
        return bucket[1] / bucket[0]
    return bucket[_STAT_INDEX[name]]


class ThresholdUnit:
    """One threshold rule's windows and states, keyed by group (``()`` when not grouped)."""

    __slots__ = ("rule", "owner", "match", "windows", "states", "compare", "path", "period", "n", "stat",
                 "threshold", "group_by", "checked", "previous")

    def __init__(self, rule: ThresholdRule, owner: str, path: str = "") -> None:
        self.rule = rule
        # Plain copies of the rule's fields: read for every sample, so no model lookups.
        self.period, self.n, self.stat = rule.period, rule.evaluation_periods, rule.statistic
        self.threshold, self.group_by = rule.threshold, tuple(rule.group_by)
        self.owner = owner  # the alarm id this unit belongs to
        self.path = path  # composite leaf path, "" for a plain threshold alarm
        # A query that only pins the resource is already satisfied by the engine's index.
        pinned_only = len(rule.query) == 1 and rule.query[0].field == "resource_id" and rule.query[0].op == "eq"
        # Series-pinned units (Gnocchi's by-metrics rule) are reached only by their series' samples.
        self.match = None if pinned_only or rule.series else compile_sample_query(rule.query)
        #: ``rate:`` methods: each series' last (time, value), to difference the next sample against.
        self.previous: dict[tuple[Any, ...], tuple[float, float]] | None = {} if rule.rate else None
        self.windows: dict[tuple[Any, ...], Window] = {}
        self.states: dict[tuple[Any, ...], str] = {}
        #: The period index each group was last evaluated in: without new data, a
        #: state can only change when a period leaves the window, so the tick
        #: skips groups still in the period it last looked at.
        self.checked: dict[tuple[Any, ...], int] = {}
        self.compare = COMPARE[rule.comparison_operator]

    def group_of(self, sample: Mapping[str, Any]) -> tuple[Any, ...]:
        group_by = self.group_by
        if not group_by:
            return ()
        return tuple(sample_field(sample, f) for f in group_by)

    def add(self, sample: Mapping[str, Any], ts: float, now: float) -> tuple[Any, ...] | None:
        """Fold a matching sample into its window; returns its group, or None if it did not match."""
        if self.match is not None and not self.match(sample):
            return None
        group = self.group_of(sample)
        w = self.windows.get(group)
        if w is None:
            w = self.windows[group] = Window()
        period = self.period
        cur = int(now // period)
        idx = min(int(ts // period), cur)  # a clock running ahead lands in the current period
        oldest = cur - self.n
        value = float(sample.get("counter_volume", 0.0))
        if self.previous is not None:
            key = (sample.get("counter_name"), sample.get("resource_id"))
            before = self.previous.get(key)
            if before is not None and ts <= before[0]:
                return None  # a redelivered or late sample: its difference was taken already
            self.previous[key] = (ts, value)
            if before is None:
                return None  # the first sample of a series only starts its rate
            value -= before[1]
        if idx < oldest:
            return None  # too old to matter to any window we evaluate
        w.add(idx, value)
        if ts > w.last:
            w.last = ts
        if len(w.buckets) > self.n + 2:
            w.prune(oldest)
        return group

    def evaluate(self, group: tuple[Any, ...], now: float, explain: bool = True) -> Verdict:
        """Aodh's rule for one group at ``now``; returns (state, reason, reason_data).

        With ``explain=False`` an unchanged state comes back without its reason:
        most samples change nothing, and the text is only needed on a transition.
        """
        n = self.n
        cur = int(now // self.period)
        self.checked[group] = cur
        w = self.windows.get(group)
        current = self.states.get(group, UNKNOWN)
        stats: list[float] = []
        if w is not None:
            buckets, stat = w.buckets, self.stat
            for idx in range(cur - n, cur + 1):
                b = buckets.get(idx)
                if b is not None:
                    stats.append(statistic(b, stat))
            if len(stats) > n:
                stats = stats[-n:]
        if len(stats) < n:
            return UNKNOWN, (f"{n - len(stats)} datapoints are unknown"), {
                "type": "threshold", "disposition": "unknown", "count": n - len(stats), "most_recent": None}
        compare, threshold = self.compare, self.threshold
        compared = [compare(v, threshold) for v in stats]
        if not explain and current != UNKNOWN:
            if (current == ALARM and all(compared)) or (current == OK and not any(compared)) or (
                    any(compared) and not all(compared)):
                return current, "", {}
        most_recent = stats[-1]
        if all(compared):
            state, disposition = ALARM, "outside"
        elif not any(compared):
            state, disposition = OK, "inside"
        else:
            state = (ALARM if compared[-1] else OK) if current == UNKNOWN else current
            disposition = "outside" if compared[-1] else "inside"
        count = sum(compared) if disposition == "outside" else len(compared) - sum(compared)
        reason = (f"Transition to {state} due to {count} samples {disposition} threshold, "
                  f"most recent: {most_recent}")
        if state == current and not all(compared) and any(compared):
            reason = f"Remaining as {state} due to {count} samples {disposition} threshold, most recent: {most_recent}"
        return state, reason, {"type": "threshold", "disposition": disposition, "count": count,
                               "most_recent": most_recent}


def within_time_constraints(constraints: list[TimeConstraint], now: datetime) -> bool:
    """Aodh: with constraints set, evaluate only inside one of them (cron start + duration)."""
    if not constraints:
        return True
    from zoneinfo import ZoneInfo

    from croniter import croniter

    for tc in constraints:
        tz = ZoneInfo(tc.timezone) if tc.timezone else timezone.utc
        local = now.astimezone(tz)
        start = croniter(tc.start, local + timedelta(seconds=1)).get_prev(datetime)
        if local - start <= timedelta(seconds=tc.duration):
            return True
    return False
