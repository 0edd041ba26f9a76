"""The outbox's claims on SQLite and on PostgreSQL (shared by several servers): one suite, both backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_support import pg_database  # noqa: F401 (fixture)
from test_rules_store import pg_schema_url

from telemetry.actions.models import Job
from telemetry.actions.outbox import Outbox, SqliteOutbox
from telemetry.actions.outbox_pg import PostgresOutbox


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """Opens the outbox; on PostgreSQL a second call is another server on the same rows."""
    opened: list[Outbox] = []
    url = pg_schema_url(request.getfixturevalue("pg_database")) if request.param == "postgresql" else ""

    def open_() -> Outbox:
        o: Outbox = PostgresOutbox(url) if url else SqliteOutbox(tmp_path / "outbox.sqlite")
        opened.append(o)
        return o

    yield open_
    for o in opened:
        o.close()


def job(i: int, group: str | None = None) -> Job:
    return Job(id=f"j{i}", target="http://127.0.0.1:9/hook", notifier="webhook",
               transition={"alarm_id": f"a{i}", "current": "alarm"}, group_key=group)


def test_claimed_rows_are_not_claimed_again_until_the_lease_ends(opener) -> None:
    box = opener()
    now = time.time()
    with box.tx():
        assert box.add(job(1), now) and box.add(job(2), now) and not box.add(job(1), now)
    first = box.claim(now, 10, "s1", lease=30)
    assert sorted(j.id for j in first) == ["j1", "j2"]
    assert box.claim(now, 10, "s2", lease=30) == [] and box.due(now, 10) == []
    assert box.pending() == 2
    # s1 died mid-delivery: once its lease ran out the rows are due for s2
    later = box.claim(now + 31, 10, "s2", lease=30)
    assert sorted(j.id for j in later) == ["j1", "j2"]
    # s1's late result is not recorded over s2's claim; s2's is
    assert box.finish(first, "delivered", 1, 200, "", owner="s1") == 0
    assert box.finish(later, "delivered", 1, 200, "", owner="s2") == 2
    assert box.pending() == 0


def test_a_group_is_claimed_whole_and_released_rows_are_due_at_once(opener) -> None:
    box = opener()
    now = time.time()
    with box.tx():
        for i in range(3):
            box.add(job(i, group="g"), now + (0 if i == 0 else 100))  # only the first is due
        box.add(job(9), now)
    claimed = box.claim(now, 1, "s1", lease=30)
    ids = {j.id for j in claimed}
    assert ids in ({"j0", "j1", "j2"}, {"j9"})
    rest = box.claim(now, 10, "s1", lease=30)
    assert ids | {j.id for j in rest} == {"j0", "j1", "j2", "j9"}
    box.release(claimed + rest, "s1")
    assert len(box.claim(now, 10, "s2", lease=30)) == 4


@pytest.fixture
def two_servers(pg_database: str) -> Iterator[tuple[Outbox, Outbox]]:
    """Two servers' handles on one shared outbox (an SQLite file has one server only)."""
    url = pg_schema_url(pg_database)
    a, b = PostgresOutbox(url), PostgresOutbox(url)
    yield a, b
    a.close()
    b.close()


async def test_two_servers_claiming_at_once_never_share_a_row(two_servers) -> None:
    a, b = two_servers
    now = time.time()
    with a.tx():
        for i in range(200):
            a.add(job(i), now)

    def drain(box: Outbox, owner: str) -> list[str]:
        got: list[str] = []
        while batch := box.claim(time.time(), 7, owner, lease=60):
            got += [j.id for j in batch]
        return got

    ga, gb = await asyncio.gather(asyncio.to_thread(drain, a, "a"), asyncio.to_thread(drain, b, "b"))
    assert not set(ga) & set(gb) and len(ga) + len(gb) == 200 and len(set(ga + gb)) == 200
    assert ga and gb  # both took a share


def test_noise_state_and_settings_are_shared(two_servers) -> None:
    a, b = two_servers
    with a.tx():
        a.set_sent("repeat:x:t", 100.0)
        a.put_setting("allowlist", ["10.0.0.0/8"])
        a.set_alarm("x", "alarm", "critical", {"host": "h"})
    assert b.last_sent("repeat:x:t") == 100.0 and b.get_setting("allowlist") == ["10.0.0.0/8"]
    assert b.firing(["critical"]) == [("x", {"host": "h"})]
