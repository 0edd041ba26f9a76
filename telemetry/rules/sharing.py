"""The rule stage as one server of several: which alarms it evaluates, and what the others changed.

Every server holds every definition and keeps every alarm's windows up to
date (it reads every sample: ``RulesStage.group``), but evaluates only the
alarms and triggers it owns (``telemetry.cluster.membership``: rendezvous
hashing of the id over the live members); the others are on standby in the
engine. When a member dies, the survivors' next heartbeat moves its alarms
to them, and they evaluate them at once on windows they already hold, so a
failover needs no rebuild and misses no sample that reached the bus.

Definitions and states others wrote are read every ``cluster.refresh``
seconds (``RulesStore.changes``): an alarm created through one server's API
is evaluated by its owner a second later, a state its owner recorded shows
in every server's API, and a composite alarm sees the alarms it reads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from telemetry.cluster.membership import Membership, owner_of
from telemetry.rules.store import Change, split_alarm

if TYPE_CHECKING:
    from telemetry.rules.stage import RulesStage

log = logging.getLogger(__name__)


class Sharing:
    def __init__(self, stage: RulesStage, membership: Membership) -> None:
        self.stage = stage
        self.membership = membership
        self.cursor: Any = None
        self._soon = asyncio.Event()
        self.taken_over = 0  # alarms and triggers this server became the owner of since it started

    def start(self, cursor: Any) -> None:
        """Called once the definitions are loaded (``cursor`` taken before loading them)."""
        self.cursor = cursor
        self.reassign(self.membership.members)
        self.membership.on_change(self._on_members)

    # -- ownership ------------------------------------------------------------------------------
    def owns(self, key: str) -> bool:
        return self.membership.owns(key)

    def reassign(self, members: tuple[str, ...]) -> tuple[set[str], set[str]]:
        """Put on standby what others own; returns the alarms and triggers that just became ours."""
        me = self.membership.member
        engine, triggers = self.stage.engine, self.stage.triggers
        standby = {aid for aid in engine.alarms if owner_of(aid, members) != me}
        gained = engine.standby - standby
        engine.standby = standby
        t_standby = {tid for tid in triggers.triggers if owner_of(tid, members) != me}
        t_gained = triggers.standby - t_standby
        triggers.standby = t_standby
        return gained, t_gained

    def _on_members(self, members: tuple[str, ...]) -> None:
        gained, t_gained = self.reassign(members)
        if gained or t_gained:
            self.taken_over += len(gained) + len(t_gained)
            log.info("rules: now evaluating %d more alarms and %d more triggers", len(gained), len(t_gained))
            self.stage.engine.take_over(gained)
            now = self.stage.triggers.clock()
            for tid in t_gained:
                t = self.stage.triggers.triggers.get(tid)
                if t is not None:
                    self.stage.triggers._evaluate(t, now)
            # The tick loop flushes what this decided within rules.tick seconds.

    def placed(self, alarm_id: str) -> None:
        """A definition was added here: evaluate it only if it is ours."""
        if self.owns(alarm_id):
            self.stage.engine.standby.discard(alarm_id)
        else:
            self.stage.engine.standby.add(alarm_id)

    def placed_trigger(self, trigger_id: str) -> None:
        if self.owns(trigger_id):
            self.stage.triggers.standby.discard(trigger_id)
        else:
            self.stage.triggers.standby.add(trigger_id)

    # -- what the others wrote ------------------------------------------------------------------
    def refresh_soon(self) -> None:
        self._soon.set()

    async def refresh_loop(self) -> None:
        interval = self.membership.cfg.refresh
        while True:
            waiter = asyncio.ensure_future(self._soon.wait())
            try:
                await asyncio.wait([waiter], timeout=interval)
            finally:
                waiter.cancel()
            self._soon.clear()
            await self.refresh()

    async def refresh(self) -> int:
        """Read and apply what changed since the last read; returns how many rows changed here."""
        stage = self.stage
        if stage.store is None:
            return 0
        async with stage._flush_lock:  # never between a commit and the version it leaves
            changes, cursor = await asyncio.to_thread(stage.store.changes, self.cursor)
            applied = sum(self._apply(ch) for ch in changes)
            self.cursor = cursor
        return applied

    def _apply(self, ch: Change) -> bool:
        stage = self.stage
        versions = stage.versions
        if ch.kind == "kv":
            if not ch.key.startswith("trigger:") or ch.version <= versions.get(ch.key, 0):
                return False
            stage.triggers.restore(ch.key.partition(":")[2], ch.value)
            versions[ch.key] = ch.version
            return True
        current = stage.engine.alarms.get(ch.key)
        if ch.value is None:
            if current is None:
                return False
            stage.remove_alarm(ch.key)
            versions.pop(ch.key, None)
            return True
        if current is None or split_alarm(current)[0] != split_alarm(ch.value)[0]:
            stage.add_alarm(ch.value)  # new or redefined: fresh windows, the stored state
            versions[ch.key] = max(ch.version, versions.get(ch.key, 0))
            return True
        if ch.version <= versions.get(ch.key, 0):
            return False
        stage.engine.apply_state(ch.value)
        versions[ch.key] = ch.version
        return True

    def details(self) -> dict[str, Any]:
        engine = self.stage.engine
        return {"member": self.membership.member, "evaluating": len(engine.alarms) - len(engine.standby),
                "standby": len(engine.standby), "taken_over": self.taken_over}
