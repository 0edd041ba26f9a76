"""The actions stage: alarm transitions from the bus into the outbox, and workers that drain it.

``handle`` decides, for every (transition x action), whether to send
(silences, inhibition, repeats, cooldown, allow-list) and writes what is to
be sent into the outbox in one transaction; only then does BusStage
acknowledge the batch. Delivery workers drain the outbox independently, so a
slow or dead receiver never holds up the bus, and a restart resumes exactly
the items not yet delivered. Workers claim the rows they send for
``lease`` seconds (``Outbox.claim``): with a shared outbox (a cluster) no
two servers send the same notification, and the rows of a server that died
mid-delivery go out from another once its claim ran out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any, ClassVar

from telemetry.actions.base import Context, Notifier
from telemetry.actions.chat import ChatNotifier
from telemetry.actions.delivery import DEAD_LETTERS, DELIVERIES, LATENCY, PENDING, SUPPRESSED, Http, backoff
from telemetry.actions.email import EmailNotifier
from telemetry.actions.heat import HeatNotifier
from telemetry.actions.log import LogNotifier
from telemetry.actions.models import Job, SendOutcome
from telemetry.actions.outbox import Outbox, SqliteOutbox, item_id
from telemetry.actions.pager import PagerNotifier
from telemetry.actions.security import UNTRUSTED, AllowList, allowlist_for, redact, redact_text
from telemetry.actions.silences import NoiseControl
from telemetry.actions.webhook import WebhookNotifier
from telemetry.bus import Delivery
from telemetry.models import AlarmTransition, Record
from telemetry.runtime import Runtime
from telemetry.stage import BusStage
from telemetry.timeutil import parse_timestamp

log = logging.getLogger(__name__)

#: Checked in order: Heat's pre-signed URLs are plain http(s) too, so Heat comes before webhooks.
NOTIFIERS: list[type[Notifier]] = [HeatNotifier, ChatNotifier, PagerNotifier, EmailNotifier, LogNotifier,
                                   WebhookNotifier]
#: Transitions whose ``origin`` says they come from the operator's own rule files are trusted;
#: anything else (alarms created through the API) may only reach allow-listed targets.
TRUSTED_ORIGINS = ("file", "config", "rules")
ALLOWLIST_KEY = "allowlist"


class ActionDispatcher(BusStage):
    name = "actions"
    group = "actions"
    batch_size = 100
    fetch_timeout = 0.2
    topics: ClassVar[dict[str, type[Record]]] = {AlarmTransition.topic: AlarmTransition}

    def __init__(self, runtime: Runtime, outbox: Outbox | None = None, lease: float = 60.0) -> None:
        """``outbox``: a shared one (a cluster's PostgreSQL); by default SQLite under ``data_dir``.

        ``lease``: how long a claimed row stays this server's to send (longer than a delivery's timeout).
        """
        super().__init__(runtime)
        self.config = runtime.settings.actions
        self.outbox = outbox or SqliteOutbox(runtime.data_dir / "actions" / "outbox.sqlite")
        self.lease = max(lease, 2 * self.config.timeout + 1)
        #: Who claims rows: unique per process, so a restarted server never takes a dead run's claims for its own.
        self.owner = f"{runtime.settings.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        api = runtime.settings.api
        self.allowlist = allowlist_for(api.host, len(api.tokens), self.config.allowed_targets
                                       + self.outbox.get_setting(ALLOWLIST_KEY, []), self.config.heat.endpoints)
        self.noise = NoiseControl(self.outbox, self.config)
        self.http: Http | None = None
        self.notifiers: dict[str, Notifier] = {}
        self.wake = asyncio.Event()
        self.inflight: set[str] = set()
        self._delivering: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.closed = False
        self.closing = False

    # -- shared with the API ------------------------------------------------
    def set_allowlist(self, entries: list[str]) -> list[str]:
        entries = AllowList.validate(entries)
        with self.outbox.tx():
            self.outbox.put_setting(ALLOWLIST_KEY, entries)
        self.allowlist.set(self.config.allowed_targets + entries)
        return entries

    def link(self, t: dict[str, Any]) -> str:
        if self.config.link:
            return self.config.link.format_map({k: v for k, v in t.items() if isinstance(v, (str, int, float))}
                                               | {"alarm_id": t.get("alarm_id", "")})
        base = self.runtime.api_address or "http://127.0.0.1:8777"
        return f"{base}/v2/alarms/{t['alarm_id']}" if t.get("alarm_id") else base

    def notifier_for(self, target: str) -> Notifier | None:
        for cls in NOTIFIERS:
            if cls.claims(target):
                return self.notifiers[cls.kind]
        return None

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        secret = self.config.signing_secret.get_secret_value() if self.config.signing_secret else None
        self.http = Http(self.config.timeout, secret, self.config.signature_header, self.allowlist)
        ctx = Context(config=self.config, http=self.http, link=self.link)
        self.notifiers = {cls.kind: cls(ctx) for cls in NOTIFIERS}
        await super().start()
        self.spawn(self._deliver_loop, "deliver")
        self.spawn(self._housekeeping, "housekeeping")
        if not isinstance(self.outbox, SqliteOutbox):
            self.spawn(self._shared_settings, "settings")

    async def stop(self) -> None:
        self.closing = True
        for t in list(self._delivering):
            t.cancel()  # the rows stay pending in the outbox, their claims given back (see _deliver)
        if self._delivering:
            await asyncio.wait(self._delivering, timeout=2)
        await super().stop()
        if self.http is not None:
            await self.http.close()
        self.outbox.close()
        self.closed = True

    # -- bus -> outbox ------------------------------------------------------
    async def handle(self, records: list[tuple[Delivery, Record]]) -> None:
        now = time.time()
        transitions = [rec for _, rec in records if isinstance(rec, AlarmTransition)]
        #: (the transition, its JSON form for the notifiers, target, notifier, why it is blocked)
        checked: list[tuple[AlarmTransition, dict[str, Any], str, Notifier | None, str | None]] = []
        for rec in transitions:
            t = rec.to_dict()
            for target in rec.actions:
                n = self.notifier_for(target)
                blocked = None
                if n is not None and n.http_target and rec.origin not in TRUSTED_ORIGINS:
                    blocked = await self.allowlist.check(n.url(target))  # DNS before the transaction
                checked.append((rec, t, target, n, blocked))
            if not rec.actions:
                checked.append((rec, t, "", None, None))
        with self.outbox.tx():
            silences = self.outbox.silences(active_only=True)
            reasons: dict[int, str | None] = {}
            for rec, t, _, _, _ in checked:
                if id(t) not in reasons:
                    self.outbox.set_alarm(rec.alarm_id, rec.current, rec.severity,
                                          {k: str(v) for k, v in rec.labels.items()})
                    reasons[id(t)] = self.noise.transition_reason(t, silences)
            for _, t, target, n, blocked in checked:
                if target:
                    self._queue(t, target, n, blocked, reasons[id(t)], now)
            PENDING.set(self.outbox.pending())
        self.wake.set()

    def _queue(self, t: dict[str, Any], target: str, n: Notifier | None, blocked: str | None, reason: str | None,
               now: float) -> None:
        kind = n.kind if n else "unknown"
        shown = redact(target)
        if n is None:
            reason, why = "rejected", f"no notifier for {shown} (schemes: http(s), alertmanager+http(s), slack+, " \
                                      "mattermost+, rocketchat+, pagerduty://, mailto:, heat+, trust+, log://)"
        elif blocked:
            reason, why = "blocked", blocked
        else:
            reason = reason or self.noise.action_reason(t, target, kind, now)
            why = ""
        if reason:
            SUPPRESSED.labels(reason=reason.split(":")[1] if ":" in reason else reason).inc()
            self.outbox.log(item=None, transition=t, notifier=kind, target=shown, status=reason, error=why, at=now)
            if why:
                log.warning("alarm %s: action %s not sent: %s", t.get("alarm_name"), shown, why)
            return
        assert n is not None
        gk = self.noise.group_key(t, target) if n.can_group(target) else None
        job = Job(id=item_id(t, target), target=target, notifier=kind, transition=t, group_key=gk)
        self.outbox.add(job, self.noise.not_before(gk), now)

    # -- outbox -> receivers ------------------------------------------------
    async def _deliver_loop(self) -> None:
        sem = asyncio.Semaphore(self.config.concurrency)
        while not self.closing:
            self.wake.clear()
            jobs = self.outbox.claim(time.time(), self.config.concurrency * 4, self.owner, self.lease)
            if not jobs:
                nxt = self.outbox.next_due()
                wait = 1.0 if nxt is None else min(1.0, max(0.02, nxt - time.time()))
                # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancel that races the wake-up.
                waiter = asyncio.ensure_future(self.wake.wait())
                try:
                    await asyncio.wait([waiter], timeout=wait)
                finally:
                    waiter.cancel()
                continue
            for unit in self._units(jobs):
                await sem.acquire()
                self.inflight.update(j.id for j in unit)
                task = asyncio.create_task(self._deliver(unit, sem), name="actions:deliver")
                self._delivering.add(task)
                task.add_done_callback(self._delivering.discard)

    @staticmethod
    def _units(jobs: list[Job]) -> list[list[Job]]:
        """Claimed rows as delivery units: the rows of one group go out together (the claim took them all)."""
        units: list[list[Job]] = []
        groups: dict[str, list[Job]] = {}
        for j in jobs:
            if j.group_key is None:
                units.append([j])
            elif j.group_key in groups:
                groups[j.group_key].append(j)
            else:
                groups[j.group_key] = [j]
                units.append(groups[j.group_key])
        return units

    async def _deliver(self, unit: list[Job], sem: asyncio.Semaphore) -> None:
        head = unit[0]
        n = self.notifiers[head.notifier]
        attempt = max(j.attempts for j in unit) + 1
        # This task's own context: API-made alarms send through the client that re-checks each connection.
        UNTRUSTED.set(n.http_target and head.transition.get("origin") not in TRUSTED_ORIGINS)
        try:
            try:
                out = await n.send(head.target, [j.transition for j in unit], head.id)
            except asyncio.CancelledError:
                try:  # due again at once, here after a restart or on another server
                    self.outbox.release(unit, self.owner)
                except Exception as exc:  # the claim runs out instead
                    log.warning("actions: could not give back %d claimed rows: %s", len(unit), exc)
                raise
            except Exception as exc:  # a notifier bug must not lose the item: retry it
                log.exception("notifier %s failed", n.kind)
                out = SendOutcome.transient(f"{type(exc).__name__}: {exc}")
            self._record(unit, n, attempt, out)
        finally:
            self.inflight.difference_update(j.id for j in unit)
            sem.release()
            self.wake.set()

    def _record(self, unit: list[Job], n: Notifier, attempt: int, out: SendOutcome) -> None:
        now = time.time()
        error = redact_text(out.error, [unit[0].target])
        shown = redact(unit[0].target)
        if out.ok:
            status = "skipped" if out.skipped else "delivered"
            next_at = None
            for j in unit:
                try:
                    LATENCY.labels(notifier=n.kind).observe(now - parse_timestamp(j.transition["timestamp"]).timestamp())
                except (KeyError, ValueError):
                    pass
            self.delivered += len(unit)
        elif out.retry and attempt < self.config.max_attempts:
            status = "pending"
            next_at = now + backoff(attempt, self.config.backoff_initial, self.config.backoff_max, out.retry_after)
        else:
            status, next_at = "dead", None
            DEAD_LETTERS.labels(notifier=n.kind).inc(len(unit))
            log.warning("action %s for alarm %s given up after %d attempts: %s", shown,
                        unit[0].transition.get("alarm_name"), attempt, error)
        DELIVERIES.labels(notifier=n.kind, outcome=status if status != "pending" else "retry").inc(len(unit))
        with self.outbox.tx():
            if self.outbox.finish(unit, status, attempt, out.status, error, next_at, self.owner) < len(unit):
                log.warning("action %s for alarm %s: our claim had run out (a send slower than the lease of %.0fs);"
                            " another server may send it again", shown, unit[0].transition.get("alarm_name"),
                            self.lease)
            for j in unit:
                self.outbox.log(item=j.id, transition=j.transition, notifier=n.kind, target=shown,
                                status="retry" if status == "pending" else status, http_status=out.status,
                                attempts=attempt, error=error)
            PENDING.set(self.outbox.pending())

    async def _shared_settings(self) -> None:
        """The allow-list other servers' APIs changed (a shared outbox keeps it)."""
        while not self.closing:
            await asyncio.sleep(5.0)
            try:
                entries = self.outbox.get_setting(ALLOWLIST_KEY, [])
            except Exception as exc:  # the database is away: keep the list we have
                log.warning("actions: could not read the shared allow-list: %s", exc)
                continue
            self.allowlist.set(self.config.allowed_targets + entries)

    async def _housekeeping(self) -> None:
        while not self.closing:
            with self.outbox.tx():
                self.outbox.prune(time.time() - self.config.retention)
            await asyncio.sleep(3600)

    def details(self) -> dict[str, Any]:
        pending = None if self.closed else self.outbox.pending()
        return super().details() | {"pending": pending, "delivered": self.delivered,
                                    "outbox": self.outbox.describe()}
