"""The alarm engine: alarms indexed by what feeds them, evaluated as data arrives.

Pure in-memory logic with no I/O, so it is fast to test and to benchmark: the
stage feeds it records and a clock, and takes ``pending`` transitions to
publish and store. Threshold units are indexed by meter name, so a sample
touches only the alarms on its meter (10,000 alarms cost what the few on
that meter cost).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from telemetry.events.predicate import equality_key, folded_values
from telemetry.rules.threshold import ThresholdUnit, within_time_constraints
from telemetry.rules.event_alarms import EventUnit, LogUnit, doc_time
from telemetry.rules.models import ALARM, OK, UNKNOWN, Alarm, leaf_rule


@dataclass
class Transition:
    """A state change (or a repeat, when ``previous == current``) waiting to be published."""

    alarm: Alarm
    previous: str
    current: str
    reason: str
    reason_data: dict[str, Any]
    labels: dict[str, Any] = field(default_factory=dict)
    evaluated_at: float = 0.0
    manual: bool = False


def _tri(state: str) -> bool | None:
    return True if state == ALARM else False if state == OK else None


class Engine:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started = clock()
        self.alarms: dict[str, Alarm] = {}
        self.units: dict[str, list[ThresholdUnit]] = {}
        self.by_meter: dict[str, list[ThresholdUnit]] = defaultdict(list)
        #: Units whose query pins one resource, by (meter, resource_id): a sample then
        #: touches only its own resource's alarms, however many alarms share the meter.
        self.by_resource: dict[tuple[str, str], list[ThresholdUnit]] = defaultdict(list)
        self.by_period: dict[int, list[ThresholdUnit]] = defaultdict(list)
        self._period_seen: dict[int, int] = {}
        self.repeaters: set[str] = set()  # alarms with repeat_actions: looked at every tick
        self.event_units: dict[str, EventUnit] = {}
        self.log_units: dict[str, LogUnit] = {}
        #: Log alarms by the field equality their query requires (field -> folded value -> alarm id
        #: -> unit): an event is offered only to those on its own values, and to the unkeyed rest.
        self.log_keyed: dict[str, dict[str, dict[str, LogUnit]]] = {}
        self.log_unkeyed: dict[str, LogUnit] = {}
        self.composites: dict[str, dict[str, Any]] = {}
        self.watchers: dict[str, set[str]] = defaultdict(set)  # alarm id or name -> composites reading it
        self.pending: list[Transition] = []
        self.dirty: set[str] = set()  # alarms whose state must be persisted
        #: Alarms another server evaluates (telemetry.cluster): their windows are kept
        #: up to date here, so taking one over needs no rebuild, but they never transition here.
        self.standby: set[str] = set()
        self._since: dict[str, float] = {}  # alarm id -> when its windows started filling
        self._repeat_at: dict[tuple[str, tuple[Any, ...]], float] = {}
        self._tc_cache: dict[str, tuple[int, bool]] = {}
        self.evaluations = 0
        #: The sample being evaluated: where it came from becomes labels (for silences).
        self._sample: Mapping[str, Any] | None = None

    # -- definitions -------------------------------------------------------
    def add(self, alarm: Alarm) -> None:
        """Add or replace an alarm; a replaced one keeps its state but starts fresh windows."""
        self.remove(alarm.alarm_id, forget_state=False)
        self.alarms[alarm.alarm_id] = alarm
        self._since[alarm.alarm_id] = self.clock()
        if alarm.threshold_rule is not None:
            unit = ThresholdUnit(alarm.threshold_rule, alarm.alarm_id)
            for key, state in (alarm.model_extra or {}).get("group_states", {}).items():
                unit.states[tuple(json.loads(key))] = state
            if not alarm.threshold_rule.group_by:
                unit.states.setdefault((), alarm.state)
            self._index([unit], alarm.alarm_id)
        elif alarm.event_rule is not None:
            self.event_units[alarm.alarm_id] = EventUnit(alarm.event_rule, alarm.alarm_id)
        elif alarm.log_rule is not None:
            lu = self.log_units[alarm.alarm_id] = LogUnit(alarm.log_rule, alarm.alarm_id)
            key = equality_key(alarm.log_rule.query)
            if key is None:
                self.log_unkeyed[alarm.alarm_id] = lu
            else:
                self.log_keyed.setdefault(key[0], {}).setdefault(key[1], {})[alarm.alarm_id] = lu
        elif alarm.composite_rule is not None:
            self.composites[alarm.alarm_id] = alarm.composite_rule
            leaves: list[ThresholdUnit] = []
            self._walk(alarm.composite_rule, alarm.alarm_id, "r", leaves)
            self._index(leaves, alarm.alarm_id)

    @staticmethod
    def _slots(u: ThresholdUnit) -> list[tuple[str, str]]:
        """The (meter, resource) slots a unit is reached through; none: it is indexed by meter."""
        if u.rule.series:
            return [(m, r) for m, r in u.rule.series]
        pinned = [q for q in u.rule.query if q.field == "resource_id" and q.op == "eq"]
        return [(u.rule.meter_name, str(pinned[0].value))] if pinned else []

    def _index(self, units: list[ThresholdUnit], alarm_id: str) -> None:
        self.units[alarm_id] = units
        if self.alarms[alarm_id].repeat_actions:
            self.repeaters.add(alarm_id)
        for u in units:
            self.by_period[u.period].append(u)
            slots = self._slots(u)
            if not slots:
                self.by_meter[u.rule.meter_name].append(u)
            for slot in slots:
                self.by_resource[slot].append(u)

    def _walk(self, node: dict[str, Any], owner: str, path: str, leaves: list[ThresholdUnit]) -> None:
        for op in ("and", "or"):
            if op in node:
                for i, sub in enumerate(node[op]):
                    self._walk(sub, owner, f"{path}.{op}{i}", leaves)
                return
        ref = node.get("alarm_id") or node.get("alarm")
        if ref:
            self.watchers[ref].add(owner)
        else:
            leaves.append(ThresholdUnit(leaf_rule(node), owner, path))

    def remove(self, alarm_id: str, forget_state: bool = True) -> None:
        self.repeaters.discard(alarm_id)
        for u in self.units.pop(alarm_id, []):
            same = self.by_period.get(u.period)
            if same is not None:
                same[:] = [x for x in same if x is not u]
            slots = self._slots(u)
            index: dict[Any, list[ThresholdUnit]] = self.by_resource if slots else self.by_meter
            keys: list[Any] = list(slots) or [u.rule.meter_name]
            for key in keys:
                lst = index.get(key)
                if lst is not None:
                    lst[:] = [x for x in lst if x.owner != alarm_id]
                    if not lst:
                        del index[key]
        self.event_units.pop(alarm_id, None)
        if self.log_units.pop(alarm_id, None) is not None:
            self.log_unkeyed.pop(alarm_id, None)
            for name, by_value in list(self.log_keyed.items()):
                for value, units in list(by_value.items()):
                    if units.pop(alarm_id, None) is not None and not units:
                        del by_value[value]
                if not by_value:
                    del self.log_keyed[name]
        self.composites.pop(alarm_id, None)
        for watchers in self.watchers.values():
            watchers.discard(alarm_id)
        if forget_state:
            self.alarms.pop(alarm_id, None)
            self._since.pop(alarm_id, None)

    # -- input ---------------------------------------------------------------
    def on_sample(self, sample: Mapping[str, Any], ts: float) -> None:
        meter = sample.get("counter_name", "")
        units = self.by_meter.get(meter)
        pinned = self.by_resource.get((meter, str(sample.get("resource_id")))) if self.by_resource else None
        if not units and not pinned:
            return
        now = self.clock()
        self._sample = sample
        try:
            for lst in (units, pinned):
                for u in lst or ():
                    group = u.add(sample, ts, now)
                    if group is not None:
                        self._evaluate_unit(u, group, now)
        finally:
            self._sample = None

    def fold(self, sample: Mapping[str, Any], ts: float) -> None:
        """Add a sample to the windows without evaluating anything (a backfill from the store)."""
        meter = sample.get("counter_name", "")
        now = self.clock()
        for lst in (self.by_meter.get(meter), self.by_resource.get((meter, str(sample.get("resource_id"))))):
            for u in lst or ():
                u.add(sample, ts, now)

    def watched_since(self, alarm_id: str, since: float) -> None:
        """The alarm's windows hold what arrived since ``since`` (a backfill reached that far back)."""
        if alarm_id in self._since:
            self._since[alarm_id] = min(self._since[alarm_id], since)

    def on_event(self, doc: Mapping[str, Any], ts: float | None = None) -> None:
        """A parsed log event or a notification (as the event store shapes it).

        ``ts`` is the event's time in epoch seconds; None reads it from the document, and only
        when a log alarm matched (most events match none, and parsing a timestamp costs more
        than the compiled tests that rule them out).
        """
        now = self.clock()
        standby = self.standby
        if doc.get("event_type"):
            for aid, eu in self.event_units.items():
                alarm = self.alarms[aid]
                if aid in standby or not self._active(alarm, now):
                    continue
                verdict = eu.check(doc)
                if verdict is not None:
                    self._set(alarm, (), *verdict, now=now, force=alarm.repeat_actions)
        if self.log_unkeyed:
            ts = self._offer(doc, ts, now, self.log_unkeyed)
        for name, by_value in self.log_keyed.items():
            value = doc.get(name)
            if value.__class__ is str:  # the usual field (level, component): no set of its values built
                units = by_value.get(value.casefold())
                if units:
                    ts = self._offer(doc, ts, now, units)
                continue
            for value in folded_values(doc, name):
                units = by_value.get(value)
                if units:
                    ts = self._offer(doc, ts, now, units)

    def on_events(self, docs: Sequence[Mapping[str, Any]], fresh: Sequence[bool]
                  ) -> list[tuple[Mapping[str, Any], Exception]]:
        """``on_event`` for each event of a batch that is ``fresh`` (not a redelivery); the events that
        failed, each with its error: bad input must not stop the good records beside it."""
        failed: list[tuple[Mapping[str, Any], Exception]] = []
        for doc, new in zip(docs, fresh):
            if new:
                try:
                    self.on_event(doc)  # its time is read only if a log alarm matches it
                except Exception as exc:
                    failed.append((doc, exc))
        return failed

    def _offer(self, doc: Mapping[str, Any], ts: float | None, now: float, units: Mapping[str, LogUnit]
               ) -> float | None:
        """Offer an event to some log alarms; returns its time if it had to be read."""
        standby = self.standby
        for aid, lu in units.items():
            if not lu.matcher(doc):  # the compiled query first: the alarm is looked at only on a match
                continue
            alarm = self.alarms[aid]
            if not self._active(alarm, now):
                continue
            if ts is None:
                ts = doc_time(doc, now)
            lu.record(doc, ts, now)
            if aid not in standby:
                verdict = lu.evaluate(now, alarm.state)
                if verdict is not None:
                    self._set(alarm, (), *verdict, now=now)
        return ts

    def tick(self) -> None:
        """Time-based conditions: data that stopped, log windows that emptied, repeats."""
        for _ in self.tick_chunks(0):
            pass

    def tick_chunks(self, size: int = 2000) -> Iterator[None]:
        """``tick`` in slices, yielding every ``size`` units so a caller can let other work run.

        Without new data a threshold state can only change when a period leaves
        the window, and periods are aligned, so only the units whose period just
        rolled over are evaluated (plus those repeating actions): a quiet second
        costs nothing however many alarms there are.
        """
        now = self.clock()
        due: list[ThresholdUnit] = []
        for period, units in self.by_period.items():
            cur = int(now // period)
            if self._period_seen.get(period) != cur:
                self._period_seen[period] = cur
                due.extend(units)
        due.extend(u for aid in self.repeaters for u in self.units.get(aid, ()))
        standby = self.standby
        for i, u in enumerate(due, 1):
            alarm = self.alarms.get(u.owner)
            if alarm is not None and u.owner not in standby and self._active(alarm, now):
                for group in list(u.windows) or ([()] if not u.group_by else []):
                    self._evaluate_unit(u, group, now, repeat=True)
            if size and i % size == 0:
                yield
        for aid, lu in list(self.log_units.items()):
            alarm = self.alarms.get(aid)
            if alarm is not None and aid not in standby and self._active(alarm, now):
                verdict = lu.evaluate(now, alarm.state)
                if verdict is not None:
                    self._set(alarm, (), *verdict, now=now)

    # -- evaluation ------------------------------------------------------------
    def _active(self, alarm: Alarm, now: float) -> bool:
        if not alarm.enabled:
            return False
        if not alarm.time_constraints:
            return True
        second = int(now)
        cached = self._tc_cache.get(alarm.alarm_id)
        if cached and cached[0] == second:
            return cached[1]
        ok = within_time_constraints(alarm.time_constraints, datetime.fromtimestamp(now, timezone.utc))
        self._tc_cache[alarm.alarm_id] = (second, ok)
        return ok

    def _evaluate_unit(self, u: ThresholdUnit, group: tuple[Any, ...], now: float, repeat: bool = False) -> None:
        if u.owner in self.standby:
            return
        alarm = self.alarms[u.owner]
        if not self._active(alarm, now):
            return
        self.evaluations += 1
        state, reason, data = u.evaluate(group, now, explain=repeat and alarm.repeat_actions)
        current = u.states.get(group, UNKNOWN)
        if state == UNKNOWN and current != UNKNOWN:
            # No data may only mean we have not watched a whole window yet (a
            # fresh start): only a fully observed, empty window means data stopped.
            span = u.rule.period * (u.rule.evaluation_periods + 1)
            if now - self._since.get(u.owner, now) < span:
                return
        if state == current:
            if repeat and alarm.repeat_actions and not u.path:
                key = (alarm.alarm_id, group)
                if now - self._repeat_at.get(key, 0.0) >= u.rule.period:
                    self._repeat_at[key] = now
                    self.pending.append(Transition(alarm, state, state, reason, data,
                                                   self._labels(alarm, u, group), now))
            return
        u.states[group] = state
        if u.path:  # a composite leaf: the composite decides
            self._evaluate_composite(alarm, now)
            return
        if u.rule.group_by:
            self._set_group(alarm, u, group, current, state, reason, data, now)
        else:
            self._set(alarm, (), state, reason, data, now=now, unit=u)

    def _labels(self, alarm: Alarm, u: ThresholdUnit | None, group: tuple[Any, ...]) -> dict[str, Any]:
        labels: dict[str, Any] = {"alarm_name": alarm.name, "alarm_type": alarm.type}
        if self._sample is not None:
            meta = self._sample.get("resource_metadata") or {}
            for key, value in (("resource_id", self._sample.get("resource_id")), ("host", meta.get("host")),
                               ("role", meta.get("role"))):
                if value is not None:
                    labels[key] = value
        if u is not None:
            labels["meter"] = u.rule.meter_name
            labels.update({k: v for k, v in zip(u.rule.group_by, group) if v is not None})
        labels.update((alarm.model_extra or {}).get("labels", {}))
        return labels

    def _set_group(self, alarm: Alarm, u: ThresholdUnit, group: tuple[Any, ...], previous: str, state: str,
                   reason: str, data: dict[str, Any], now: float) -> None:
        extra = alarm.model_extra if alarm.model_extra is not None else {}
        extra.setdefault("group_states", {})[json.dumps(list(group))] = state
        alarm.__pydantic_extra__ = extra
        states = set(u.states.values())
        overall = ALARM if ALARM in states else OK if OK in states else UNKNOWN
        data = {**data, "group": dict(zip(u.rule.group_by, group))}
        self.pending.append(Transition(alarm, previous, state, reason, data, self._labels(alarm, u, group), now))
        self._apply(alarm, overall, reason, now)

    def _set(self, alarm: Alarm, group: tuple[Any, ...], state: str, reason: str, data: dict[str, Any],
             now: float, force: bool = False, unit: ThresholdUnit | None = None) -> None:
        previous = alarm.state
        if state == previous and not force:
            return
        self.pending.append(Transition(alarm, previous, state, reason, data, self._labels(alarm, unit, group), now))
        self._apply(alarm, state, reason, now)

    def _apply(self, alarm: Alarm, state: str, reason: str, now: float) -> None:
        changed = state != alarm.state
        alarm.state = state  # type: ignore[assignment]
        alarm.state_reason = reason
        if changed:
            alarm.state_timestamp = datetime.fromtimestamp(now, timezone.utc)
        self.dirty.add(alarm.alarm_id)
        if changed:
            for ref in (alarm.alarm_id, alarm.name):
                for cid in list(self.watchers.get(ref, ())):
                    if cid in self.alarms:
                        self._evaluate_composite(self.alarms[cid], now)

    def _evaluate_composite(self, alarm: Alarm, now: float, depth: int = 0) -> None:
        rule = self.composites.get(alarm.alarm_id)
        if rule is None or depth > 10 or alarm.alarm_id in self.standby or not self._active(alarm, now):
            return
        leaves = {u.path: u.states.get((), UNKNOWN) for u in self.units.get(alarm.alarm_id, [])}
        value = self._tree(rule, "r", leaves)
        state = ALARM if value is True else OK if value is False else UNKNOWN
        if state != alarm.state:
            reason = f"Composite rule alarm with composition form: {json.dumps(rule, sort_keys=True)} transition to {state}"
            self._set(alarm, (), state, reason, {"type": "composite", "leaves": leaves}, now=now)

    def _tree(self, node: dict[str, Any], path: str, leaves: dict[str, str]) -> bool | None:
        for op in ("and", "or"):
            if op in node:
                vals = [self._tree(s, f"{path}.{op}{i}", leaves) for i, s in enumerate(node[op])]
                if op == "and":
                    return False if False in vals else True if all(v is True for v in vals) else None
                return True if True in vals else False if all(v is False for v in vals) else None
        ref = node.get("alarm_id") or node.get("alarm")
        if ref:
            target = self.alarms.get(ref) or next((a for a in self.alarms.values() if a.name == ref), None)
            return _tri(target.state) if target else None
        return _tri(leaves.get(path, UNKNOWN))

    def set_state(self, alarm_id: str, state: str, reason: str = "Manually set via the API") -> Transition | None:
        """``PUT /v2/alarms/{id}/state``: the operator's word, recorded like any transition."""
        alarm = self.alarms[alarm_id]
        now = self.clock()
        for u in self.units.get(alarm_id, []):
            for g in list(u.states) or [()]:
                u.states[g] = state
        previous = alarm.state
        if previous == state:
            return None
        t = Transition(alarm, previous, state, reason, {"type": "manual"}, self._labels(alarm, None, ()), now, True)
        self.pending.append(t)
        self._apply(alarm, state, reason, now)
        return t

    def apply_state(self, stored: Alarm) -> None:
        """A state another server recorded: taken as it is, no transition here (that server sent it)."""
        alarm = self.alarms.get(stored.alarm_id)
        if alarm is None:
            return
        changed = alarm.state != stored.state
        alarm.state, alarm.state_reason = stored.state, stored.state_reason
        alarm.state_timestamp = stored.state_timestamp
        group_states = (stored.model_extra or {}).get("group_states")
        if group_states is not None:
            extra = alarm.model_extra if alarm.model_extra is not None else {}
            extra["group_states"] = dict(group_states)
            alarm.__pydantic_extra__ = extra
        for u in self.units.get(alarm.alarm_id, []):
            if u.path:  # composite leaves are evaluated from data by the composite's owner
                continue
            if u.group_by:
                u.states = {tuple(json.loads(k)): v for k, v in (group_states or {}).items()}
            else:
                u.states[()] = stored.state
        if changed:
            now = self.clock()
            for ref in (alarm.alarm_id, alarm.name):
                for cid in list(self.watchers.get(ref, ())):
                    if cid in self.alarms:
                        self._evaluate_composite(self.alarms[cid], now)

    def take_over(self, alarm_ids: set[str]) -> None:
        """Evaluate alarms this server just became the owner of, on the windows it kept for them."""
        now = self.clock()
        for aid in alarm_ids:
            alarm = self.alarms.get(aid)
            if alarm is None or not self._active(alarm, now):
                continue
            for u in self.units.get(aid, ()):
                for group in list(u.windows) or ([()] if not u.group_by else []):
                    self._evaluate_unit(u, group, now)
            lu = self.log_units.get(aid)
            if lu is not None:
                verdict = lu.evaluate(now, alarm.state)
                if verdict is not None:
                    self._set(alarm, (), *verdict, now=now)
            if aid in self.composites:
                self._evaluate_composite(alarm, now)

    def take(self) -> tuple[list[Transition], list[Alarm]]:
        """Transitions to publish and alarms to persist since the last call."""
        pending, self.pending = self.pending, []
        dirty = [self.alarms[a] for a in self.dirty if a in self.alarms]
        self.dirty = set()
        return pending, dirty
