"""Who is in the cluster, and who owns what: heartbeats in PostgreSQL, rendezvous hashing over the live.

Membership rides on the database the servers already share, not on a
consensus of our own: each member upserts its row every ``heartbeat``
seconds (stamped with the database's clock, so the members' clocks never
disagree about who is late), and the live members are the rows stamped
within ``lease``. Every member reads the same rows and hashes the same way,
so all agree on the owner of a key without talking to each other.

Rendezvous (highest random weight) hashing rather than a ring: with a few
members it spreads keys evenly without virtual nodes, and when a member
leaves only its own keys move, each to whichever survivor scores highest.

A member that cannot renew its row for ``lease - heartbeat`` seconds
stops owning anything (it fences itself) before the others take its keys
over, so two members never both believe they own a key because one of them
lost the database; the rule store's versioned writes catch what a brief
overlap during a join could still do.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Counter, Gauge

from telemetry.cluster.pg import Pg
from telemetry.component import Component, StartupError
from telemetry.config.cluster import ClusterConfig
from telemetry.metrics import REGISTRY

log = logging.getLogger(__name__)

MEMBERS = Gauge("telemetry_cluster_members", "Live members this server sees (0 while it is fenced off)",
                registry=REGISTRY)
HEARTBEAT_FAILURES = Counter("telemetry_cluster_heartbeat_failures", "Heartbeats that could not be written",
                             registry=REGISTRY)
CHANGES = Counter("telemetry_cluster_membership_changes", "Times the set of live members changed",
                  registry=REGISTRY)

SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster_members (member text PRIMARY KEY, started_at timestamptz NOT NULL,
  heartbeat_at timestamptz NOT NULL, info jsonb NOT NULL DEFAULT '{}');
"""
BEAT = """
INSERT INTO cluster_members (member, started_at, heartbeat_at, info) VALUES (%(m)s, now(), now(), %(info)s)
ON CONFLICT (member) DO UPDATE SET heartbeat_at = now(), info = excluded.info
"""
LIVE = "SELECT member FROM cluster_members WHERE heartbeat_at > now() - make_interval(secs => %s) ORDER BY member"


def weight(member: str, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{member}\0{key}".encode(), digest_size=8).digest(), "big")


def owner_of(key: str, members: Sequence[str]) -> str | None:
    """The member that owns ``key``: the one scoring highest for it (None without members)."""
    best: str | None = None
    score = -1
    for m in members:
        w = weight(m, key)
        if w > score:
            best, score = m, w
    return best


class Membership(Component):
    """This server's registration, and the live members as last read."""

    name = "cluster"
    critical = True

    def __init__(self, cfg: ClusterConfig, member: str, info: dict[str, Any] | None = None) -> None:
        super().__init__()
        assert cfg.url is not None  # the config model requires it when the section is on
        self.cfg = cfg
        self.member = member
        self.info = info or {}
        self.db = Pg(cfg.url, SCHEMA, 727101, f"cluster {member}")
        #: The live members, sorted; empty while this member is fenced off.
        self.members: tuple[str, ...] = ()
        self._listeners: list[Callable[[tuple[str, ...]], None]] = []
        self._last_ok = 0.0  # monotonic time at which the last successful heartbeat was sent
        self.failures = 0

    # -- what the owners of keys ask ----------------------------------------------------------
    def owns(self, key: str) -> bool:
        return owner_of(key, self.members) == self.member

    def on_change(self, listener: Callable[[tuple[str, ...]], None]) -> None:
        """Call ``listener(members)`` on the event loop whenever the live set changes."""
        self._listeners.append(listener)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self.beat()
        except Exception as exc:
            raise StartupError(f"cluster: cannot register in {self.db.describe()}: {exc}") from exc
        self.spawn(self._loop, "heartbeat")

    async def stop(self) -> None:
        await self.cancel_tasks()
        try:  # leaving on purpose: the others take this member's keys at their next heartbeat
            await asyncio.to_thread(self.db.execute, "DELETE FROM cluster_members WHERE member = %s", (self.member,))
        except Exception as exc:  # the lease runs out instead
            log.warning("cluster: could not leave cleanly (%s); the others wait for the lease", exc)
        await asyncio.to_thread(self.db.close)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat)
            try:
                await self.beat()
            except Exception as exc:
                self.failures += 1
                HEARTBEAT_FAILURES.inc()
                self.error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("cluster: heartbeat failed: %s", exc)
                if time.monotonic() - self._last_ok > self.cfg.lease - self.cfg.heartbeat:
                    self._set(())  # fenced: the others are about to take over our keys

    async def beat(self) -> None:
        sent = time.monotonic()
        live = await asyncio.to_thread(self._beat_sync)
        self._last_ok = sent
        self.error = None
        self._set(live)

    def _beat_sync(self) -> tuple[str, ...]:
        import json

        with self.db.tx() as conn:
            conn.execute(BEAT, {"m": self.member, "info": json.dumps(self.info)})
            rows = conn.execute(LIVE, (self.cfg.lease,)).fetchall()
        return tuple(r[0] for r in rows)

    def _set(self, members: tuple[str, ...]) -> None:
        if members == self.members:
            return
        old, self.members = self.members, members
        CHANGES.inc()
        MEMBERS.set(len(members))
        log.info("cluster: live members %s (were %s)", ", ".join(members) or "none (fenced)", ", ".join(old) or "none")
        for listener in self._listeners:
            listener(members)

    def problem(self) -> str | None:
        if not self.members:
            return "fenced off: the heartbeat could not be written, so this server owns no alarm"
        return None

    def details(self) -> dict[str, Any]:
        return {"member": self.member, "members": list(self.members), "store": self.db.describe()}
