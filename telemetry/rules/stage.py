"""The rule engine as a server stage: consume samples, events and notifications; publish transitions.

It evaluates as each batch arrives (not on a 60 s cycle like Aodh), so a
breaching sample becomes an ``alarm_transitions`` record within the same
batch. A plain asyncio loop ticks once a second for time-based conditions:
one coroutine on the daemon's own loop needs no locking against the
consumer, where apscheduler would add a thread pool and a dependency for a
single fixed-interval job.

A flush first commits the new states, their history and the transitions
(one transaction, off the event loop, refused when another server moved an
alarm's version on), then publishes the transitions and only then lets the
batch be acknowledged; a transition committed but not yet published when
the process dies stays in the store's journal and is published again
(``_journal_loop``), so no page is lost and none is decided twice. With a
``cluster`` section the servers share the store and divide the alarms
(``telemetry.rules.sharing``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar

from prometheus_client import Counter, Gauge, Histogram

from telemetry.bus import Delivery
from telemetry.bus.records import publish_records
from telemetry.cluster.membership import Membership
from telemetry.bus.topics import EVENTS, METERED_SAMPLES, NOTIFICATIONS
from telemetry.events.documents import notification_document
from telemetry.metrics import BUS_CONSUMED, BUS_REDELIVERED, RECORDS_IN, RECORDS_REJECTED, REGISTRY
from telemetry.recent import RecentIds
from telemetry.fastcodec import fast_sample_doc
from telemetry.models import AlarmTransition, Event, Notification, Record, Sample, derived_id, sample_doc
from telemetry.rules.evaluator import Engine, Transition
from telemetry.rules.loader import RuleSet, load_rules
from telemetry.rules.backfill import backfill
from telemetry.rules.models import Alarm, AlarmChange
from telemetry.rules.sharing import Sharing
from telemetry.rules.store import Commit, RulesStore, open_rules_store
from telemetry.rules.triggers.actions import targets_for
from telemetry.rules.triggers.engine import AODH_SEVERITY, Trigger, TriggerEngine
from telemetry.runtime import Runtime
from telemetry.stage import BusStage

log = logging.getLogger(__name__)

TRANSITIONS = Counter("telemetry_rules_transitions", "Alarm and trigger state changes published",
                      ["kind", "current"], registry=REGISTRY)
ALARMS = Gauge("telemetry_rules_alarms", "Alarms the engine evaluates", registry=REGISTRY)
TRIGGERS = Gauge("telemetry_rules_triggers", "Triggers bound to hosts", registry=REGISTRY)
LATENCY = Histogram("telemetry_rules_transition_latency_seconds",
                    "From a batch's arrival to its transitions being published", registry=REGISTRY,
                    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
REFUSED = Counter("telemetry_rules_refused_commits", "Alarm or trigger states not written because another "
                  "server had moved their version on (a brief overlap of owners); their transitions were dropped",
                  registry=REGISTRY)
DEDUP_WINDOW = 200_000  # recent record ids remembered, so a redelivered sample never counts twice


class RulesStage(BusStage):
    name = "stage.rules"
    group = "rules"
    topics: ClassVar[dict[str, type[Record]]] = {METERED_SAMPLES: Sample, EVENTS: Event, NOTIFICATIONS: Notification}

    def __init__(self, runtime: Runtime, membership: Membership | None = None, store_url: str | None = None) -> None:
        """``membership`` and ``store_url`` (the cluster's PostgreSQL) make this one server of several."""
        super().__init__(runtime)
        self.cfg = runtime.settings.rules
        self.engine = Engine()
        self.triggers = TriggerEngine()
        self.store: RulesStore | None = None
        self.store_url = store_url
        self.ruleset = RuleSet()
        self._seen = RecentIds(DEDUP_WINDOW)
        #: Ids of samples folded in from the store at start: the bus may bring them again.
        self._backfilled: set[str] = set()
        self._backfilled_until = 0.0
        self._flush_lock = asyncio.Lock()
        #: Transitions committed whose publication failed: the next flush tries them first.
        self._unpublished: list[AlarmTransition] = []
        self.bound_hosts: set[str] = set()
        #: Version of each alarm's (and ``trigger:<id>``'s) state as this server last read or wrote it.
        self.versions: dict[str, int] = {}
        self.sharing = Sharing(self, membership) if membership is not None else None
        if membership is not None:
            # Every server reads every sample: with Kafka's partitions keyed by resource a shared group
            # would show each server a slice, and an alarm over a meter needs all of it (docs/deployment.md).
            self.group = f"rules-{membership.member}"

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        self.store = store = await asyncio.to_thread(open_rules_store, self.store_url, self.runtime.data_dir / "rules")
        cursor = await asyncio.to_thread(store.cursor)  # before loading: what changes after is seen again
        stored = {s.value.alarm_id: s for s in await asyncio.to_thread(store.load_alarms)}
        alarms = {aid: s.value for aid, s in stored.items()}
        self.versions = {aid: s.version for aid, s in stored.items()}
        self.ruleset = await asyncio.to_thread(load_rules, self.cfg.paths)
        for a in self.ruleset.alarms:  # file alarms: the file's definition, the stored state
            old = alarms.get(a.alarm_id)
            if old is not None:
                a.state, a.state_timestamp, a.state_reason = old.state, old.state_timestamp, old.state_reason
                group_states = (old.model_extra or {}).get("group_states")
                if group_states:
                    a.group_states = group_states  # type: ignore[attr-defined]  # an extra field of grouped alarms
            alarms[a.alarm_id] = a
        await asyncio.to_thread(store.put_alarms, self.ruleset.alarms)
        for a in alarms.values():
            self.engine.add(a)  # before sharing starts: it puts the others' alarms on standby at once
        self._bind_configured_hosts()
        for key, kept in (await asyncio.to_thread(store.load_kv, "trigger:")).items():
            self.triggers.restore(key.partition(":")[2], kept.value)
            self.versions[key] = kept.version
        if self.sharing is not None:
            self.sharing.start(cursor)
        await self._backfill()
        ALARMS.set(len(self.engine.alarms))
        gc.freeze()  # thousands of long-lived definitions: keep them out of every GC pass
        await super().start()
        self.spawn(self._tick_loop, "tick")
        self.spawn(self._journal_loop, "journal")
        if self.sharing is not None:
            self.spawn(self.sharing.refresh_loop, "refresh")

    async def _backfill(self) -> None:
        """Windows from the sample store, so a start does not wait a whole window to judge (nor misjudge)."""
        store = self.runtime.sample_store
        if store is None:
            return
        now = time.time()
        try:
            ids, span = await backfill(self.engine, store, now)
        except Exception as exc:  # a store that cannot answer must not keep the engine from starting
            log.warning("%s: could not fill the windows from the sample store (%s); they fill as samples "
                        "arrive", self.name, exc)
            return
        self._backfilled = ids
        self._backfilled_until = now + span

    async def stop(self) -> None:
        await super().stop()
        await self.flush()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None

    async def _journal_loop(self) -> None:
        """Publish transitions committed but left unpublished (a crash between the two, a bus outage)."""
        while True:
            await asyncio.sleep(2.0)
            if self.store is None:
                continue
            due = await asyncio.to_thread(self.store.journal_due)
            if not due:
                continue
            records = [AlarmTransition.from_json(body) for _, body in due]
            await publish_records(self.runtime.bus, records, self.runtime.settings.bus.format, durable=True)
            await asyncio.to_thread(self.store.journal_done, [i for i, _ in due])
            log.info("%s: published %d transitions left in the journal", self.name, len(due))

    def _bind_configured_hosts(self) -> None:
        roles = {h: list(r) for h, r in self.cfg.hosts.items()}
        local = self.runtime.settings.sources.checks.templates
        if local:
            roles.setdefault(self.runtime.settings.host, []).extend(local)
        for host, names in roles.items():
            self.bind_host(host, names)
        for host, d in self.ruleset.host_triggers:
            self._add_trigger(Trigger(d, host))

    def add_alarm(self, alarm: Alarm) -> None:
        self.engine.add(alarm)
        if self.sharing is not None:
            self.sharing.placed(alarm.alarm_id)
        ALARMS.set(len(self.engine.alarms))

    def remove_alarm(self, alarm_id: str) -> None:
        self.engine.remove(alarm_id)
        self.engine.standby.discard(alarm_id)
        ALARMS.set(len(self.engine.alarms))

    def bind_host(self, host: str, roles: list[str]) -> int:
        """Apply each role's template to ``host``; returns how many triggers were bound."""
        n = 0
        for role in roles:
            tpl = self.ruleset.templates.get(role)
            if tpl is None:
                log.warning("rules: no template %r for host %s (have: %s)", role, host,
                            ", ".join(self.ruleset.templates) or "none")
                continue
            for d in tpl.triggers:
                n += self._add_trigger(Trigger(d, host, tpl.name, tpl.macros))
        self.bound_hosts.add(host)
        TRIGGERS.set(len(self.triggers.triggers))
        return n

    def _add_trigger(self, t: Trigger) -> int:
        if t.trigger_id in self.triggers.triggers:
            return 0
        self.triggers.add(t)
        if self.sharing is not None:
            self.sharing.placed_trigger(t.trigger_id)
        return 1

    # -- input -----------------------------------------------------------------
    def _fresh(self, rid: str) -> bool:
        return not rid or self._seen.fresh(rid)

    async def handle(self, records: list[tuple[Delivery, Record]]) -> None:
        arrived = time.monotonic()
        if all(d.topic == EVENTS for d, _ in records):  # the log path's batches: the events' ids at once
            self._ingest_events([r for _, r in records])
        else:
            self.ingest([(d.topic, r) for d, r in records])
        await self.flush()
        LATENCY.observe(time.monotonic() - arrived)

    def _ingest_events(self, events: Sequence[Any]) -> None:
        """``ingest`` of events only (contract dicts, or Events from a broker), new ones told apart by
        ``RecentIds.fresh_many`` for the whole batch."""
        docs = [r if isinstance(r, dict) else r.to_dict() for r in events]
        rids = [str(d.get("message_id") or d.get("id") or "") for d in docs]
        fresh = self._seen.fresh_many(rids) if all(rids) else [self._fresh(rid) for rid in rids]
        for d, exc in self.engine.on_events(docs, fresh):
            self._rejected(d, exc)

    def _rejected(self, record: Any, exc: Exception) -> None:
        RECORDS_REJECTED.labels(stage=self.name, reason=f"evaluation:{type(exc).__name__}").inc()
        log.warning("%s: could not evaluate a %s record: %s", self.name, type(record).__name__, exc)

    def ingest(self, records: Sequence[Record | tuple[str, Any]]) -> None:
        """Feed records (or ``(topic, record)`` pairs as they came off the bus) to the engines; no I/O.

        A record the engine cannot handle is counted and skipped, never retried
        forever: redelivering the batch would fail the same way.
        """
        now = time.time()
        for item in records:
            topic, r = item if isinstance(item, tuple) else (item.topic, item)
            try:
                self._ingest_one(topic, r, now)
            except Exception as exc:  # bad input must not stop the good records beside it
                self._rejected(r, exc)

    def _decode(self, deliveries: Sequence[Delivery]) -> tuple[list[tuple[Delivery, Any]], list[tuple[Delivery, str]]]:
        """Well-formed samples take a fast path (a checked dict, no model); the rest the full one.

        At 10,000 samples/s model validation would be most of the stage's time;
        a sample that fails the quick checks goes through the model, so bad
        input is still dead-lettered with the model's reason.
        """
        handed = self._handed_over(deliveries)
        if handed is not None:  # in this process, the publishers' own objects
            return handed, []
        fast: list[tuple[Delivery, Any] | None] = []  # per delivery, in order: its sample's doc, or None
        rest: list[Delivery] = []  # the others, for the full path: one call, counted once for them all
        redelivered = 0
        for d in deliveries:
            doc = fast_sample_doc(d.value) if d.record is None and d.topic == METERED_SAMPLES else None
            if doc is None:
                rest.append(d)
                fast.append(None)
                continue
            fast.append((d, doc))
            redelivered += d.redelivered
        taken = len(deliveries) - len(rest)
        if taken:
            BUS_CONSUMED.labels(topic=METERED_SAMPLES).inc(taken)
            RECORDS_IN.labels(stage=self.name).inc(taken)
            if redelivered:
                BUS_REDELIVERED.labels(topic=METERED_SAMPLES).inc(redelivered)
        if not rest:
            return fast, []  # type: ignore[return-value]  # no None left: every one was a sample's doc
        decoded, bad = super()._decode(rest)
        by_delivery = {id(pair[0]): pair for pair in decoded}
        good = [pair for pair in (f if f is not None else by_delivery.get(id(d)) for f, d in zip(fast, deliveries))
                if pair is not None]
        return good, bad

    def _ingest_one(self, topic: str, r: Any, now: float) -> None:
        engine = self.engine
        if topic == EVENTS:
            # An event's contract dict (in this process) or an Event (from a broker). A notification
            # stored as an event keeps its message_id: seen once, counted once.
            d = r if isinstance(r, dict) else r.to_dict()
            if self._fresh(str(d.get("message_id") or d.get("id") or "")):
                engine.on_event(d)  # its time is read only if a log alarm matches it
        elif isinstance(r, dict):  # a sample's fast-decoded doc
            self._ingest_sample(r)
        elif isinstance(r, Sample):
            self._ingest_sample(sample_doc(r))
        elif isinstance(r, Notification):
            if self._fresh(r.message_id):
                engine.on_event(notification_document(r), r.timestamp.timestamp())

    def _ingest_sample(self, doc: dict[str, Any]) -> None:
        if not self._fresh(doc["message_id"]):
            return
        if self._backfilled:
            if doc["message_id"] in self._backfilled:
                return  # already folded in from the store
            if time.time() > self._backfilled_until:
                self._backfilled = set()
        ts = doc["ts"]
        self.engine.on_sample(doc, ts)
        meta = doc["resource_metadata"]
        name, volume = doc["counter_name"], doc["counter_volume"]
        host = str(meta.get("host") or doc["resource_id"])
        if meta.get("role") and host not in self.bound_hosts and self.ruleset.templates:
            role = meta["role"]
            self.bind_host(host, role if isinstance(role, list) else [role])
        triggers = self.triggers
        triggers.on_value(host, name, ts, volume)
        param = meta.get("path") or meta.get("interface") or meta.get("device")
        if param:  # per-filesystem / per-NIC items: hardware.disk.size.used[/]
            triggers.on_value(host, f"{name}[{param}]", ts, volume)

    async def _tick_loop(self) -> None:
        last_expiry = 0.0
        while True:
            await asyncio.sleep(self.cfg.tick)
            for _ in self.engine.tick_chunks():
                await asyncio.sleep(0)  # let batches of samples through between slices
            self.triggers.tick()
            await self.flush()
            if self.store is not None and time.monotonic() - last_expiry > 3600:
                last_expiry = time.monotonic()
                await asyncio.to_thread(self.store.expire_history, self.cfg.history_ttl)

    # -- output ----------------------------------------------------------------
    async def flush(self) -> None:
        """Commit pending transitions and states, then publish the transitions the store accepted."""
        async with self._flush_lock:
            transitions, dirty = self.engine.take()
            fired, dirty_triggers = self.triggers.take()
            if not (transitions or dirty or fired or dirty_triggers or self._unpublished):
                return
            try:
                records = await self._commit(transitions, dirty, fired, dirty_triggers)
            except BaseException:
                # Not durable: keep them for the next flush, since the engine's state
                # already moved on and a redelivered batch would not redo it.
                self.engine.pending[:0] = transitions
                self.engine.dirty.update(a.alarm_id for a in dirty)
                self.triggers.pending[:0] = fired
                self.triggers.dirty.update(t.trigger_id for t in dirty_triggers)
                raise
            records = self._unpublished + records
            if records:  # committed: published again by the next flush (or from the journal) until the bus has them
                self._unpublished = records
                await publish_records(self.runtime.bus, records, self.runtime.settings.bus.format, durable=True)
                self._unpublished = []
                for rec in records:
                    TRANSITIONS.labels(kind=rec.alarm_type, current=rec.current).inc()
                if self.store is not None:
                    await asyncio.to_thread(self.store.journal_done, [r.transition_id for r in records])

    async def _commit(self, transitions: list[Transition], dirty: list[Alarm],
                      fired: list[tuple[Trigger, str, str, str]], dirty_triggers: list[Trigger]) -> list[AlarmTransition]:
        """Write states, history and transitions; returns the transitions to publish (the refused ones dropped)."""
        if not (transitions or dirty or fired or dirty_triggers):
            return []
        keyed = [(t.alarm.alarm_id, self._record(t)) for t in transitions]
        keyed += [(f"trigger:{f[0].trigger_id}", self._trigger_record(*f)) for f in fired]
        if self.store is None:
            return [r for _, r in keyed]
        versions = self.versions
        c = Commit(
            alarms=[(a.model_copy(deep=True), versions.get(a.alarm_id, 0)) for a in dirty],  # the loop mutates the live ones
            kv=[(k, t.state(), versions.get(k, 0)) for t in dirty_triggers for k in (f"trigger:{t.trigger_id}",)],
            changes=[self._change(t) for t in transitions if t.previous != t.current],
            records=[(key, r.transition_id, r.to_json()) for key, r in keyed],
        )
        refused = await asyncio.to_thread(self.store.commit, c)
        for key in [a.alarm_id for a, _ in c.alarms] + [k for k, _, _ in c.kv]:
            if key not in refused:
                versions[key] = versions.get(key, 0) + 1
        if refused:
            REFUSED.inc(len(refused))
            log.info("%s: %d states were moved on by another server meanwhile; their transitions are dropped "
                     "and the stored states read again", self.name, len(refused))
            if self.sharing is not None:
                self.sharing.refresh_soon()
        return [r for key, r in keyed if key not in refused]

    def _record(self, t: Transition) -> AlarmTransition:
        a = t.alarm
        return AlarmTransition(
            alarm_id=a.alarm_id, alarm_name=a.name, severity=a.severity, previous=t.previous, current=t.current,
            reason=t.reason, reason_data=t.reason_data,
            timestamp=datetime.fromtimestamp(t.evaluated_at, timezone.utc),
            actions=a.actions_for(t.current), repeat_actions=a.repeat_actions, alarm_type=a.type,
            transition_id=derived_id("transition", a.alarm_id, sorted(t.labels.items()), t.evaluated_at, t.current),
            labels=t.labels, evaluated_at=datetime.fromtimestamp(t.evaluated_at, timezone.utc).isoformat(),
            # The actions dispatcher trusts targets of the operator's own rule files; API-created
            # alarms may only reach allow-listed targets (telemetry.actions.dispatch.TRUSTED_ORIGINS).
            origin="api" if a.origin == "api" else "file", rule_file=None if a.origin == "api" else a.origin,
        )

    def _trigger_record(self, tr: Trigger, previous: str, current: str, reason: str) -> AlarmTransition:
        now = time.time()
        state = {"PROBLEM": "alarm", "OK": "ok"}
        return AlarmTransition(
            alarm_id=tr.trigger_id, alarm_name=tr.name, severity=AODH_SEVERITY[tr.severity],
            previous=state[previous], current=state[current], reason=reason,
            reason_data={"type": "trigger", "expression": tr.expression, "status": current,
                         "severity": tr.severity, "host": tr.host},
            timestamp=datetime.fromtimestamp(now, timezone.utc), repeat_actions=False,
            actions=targets_for(tr, current, self.ruleset.trigger_actions),
            transition_id=derived_id("transition", tr.trigger_id, tr.last_change, current),
            alarm_type="trigger", labels={"host": tr.host, "trigger": tr.name, "template": tr.template,
                                          "severity": tr.severity, **tr.definition.tags},
            evaluated_at=datetime.fromtimestamp(now, timezone.utc).isoformat(),
            # Triggers come from the operator's rules files and templates: their targets are trusted.
            origin="file", rule_file=tr.template or "rules",
        )

    @staticmethod
    def _change(t: Transition) -> AlarmChange:
        import json

        a = t.alarm
        detail = {"state": t.current, "previous": t.previous, "transition_reason": t.reason,
                  "reason_data": t.reason_data, "labels": t.labels}
        return AlarmChange(alarm_id=a.alarm_id, type="state transition", detail=json.dumps(detail, default=str),
                           project_id=a.project_id, user_id=a.user_id, on_behalf_of=a.project_id,
                           timestamp=datetime.fromtimestamp(t.evaluated_at, timezone.utc), severity=a.severity)

    def details(self) -> dict[str, Any]:
        out = {**super().details(), "alarms": len(self.engine.alarms), "triggers": len(self.triggers.triggers),
               "evaluations": self.engine.evaluations}
        if self.sharing is not None:
            out.update(self.sharing.details())
        return out
