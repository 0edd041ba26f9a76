"""The rule store on SQLite and on PostgreSQL: one suite, both backends (as tests/test_store_backends.py).

PostgreSQL runs against the local server, a schema per test.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from store_support import pg_database  # noqa: F401 (fixture)

from telemetry.rules.models import Alarm, AlarmChange
from telemetry.rules.store import Commit, RulesStore, SqliteRulesStore
from telemetry.rules.store_pg import PostgresRulesStore
from telemetry.timeutil import utcnow


def pg_schema_url(base: str) -> str:
    schema = f"r_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    return f"{base}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """Opens the store; called twice it gives a second handle on the same data (another server, a restart)."""
    opened: list[RulesStore] = []
    url = pg_schema_url(request.getfixturevalue("pg_database")) if request.param == "postgresql" else ""

    def open_() -> RulesStore:
        s: RulesStore = PostgresRulesStore(url) if url else SqliteRulesStore(tmp_path / "rules")
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()


def alarm(name: str = "cpu", **kw: object) -> Alarm:
    return Alarm.model_validate({"name": name, "type": "threshold", "alarm_id": f"id-{name}",
                                 "threshold_rule": {"meter_name": "cpu_util", "threshold": 75,
                                                    "comparison_operator": "gt"}, **kw})


def record(key: str, tid: str) -> tuple[str, str, bytes]:
    return key, tid, f'{{"alarm_id": "{key}", "transition_id": "{tid}"}}'.encode()


def test_file_definitions_keep_the_stored_state(opener) -> None:
    store = opener()
    a = alarm()
    store.put_alarms([a])
    [(got, version)] = store.load_alarms()
    assert got.state == "insufficient data" and version == 0
    a.state = "alarm"
    assert store.commit(Commit(alarms=[(a, 0)])) == set()
    # a server starting with the same rules file writes the definition, never over the state
    fresh = alarm(description="changed")
    store.put_alarms([fresh])
    [(got, version)] = opener().load_alarms()
    assert (got.state, got.description, version) == ("alarm", "changed", 1)


def test_commit_refuses_a_version_moved_on(opener) -> None:
    a, b = opener(), opener()  # two servers
    x = alarm()
    a.put_alarms([x])
    x.state = "alarm"
    assert a.commit(Commit(alarms=[(x, 0)], records=[record(x.alarm_id, "t1")],
                           changes=[AlarmChange(alarm_id=x.alarm_id, type="state transition", detail="{}")])) == set()
    # the other server evaluated the same breach on the version it had read: refused, nothing written
    y = alarm()
    y.state = "alarm"
    refused = b.commit(Commit(alarms=[(y, 0)], records=[record(y.alarm_id, "t2")],
                              changes=[AlarmChange(alarm_id=y.alarm_id, type="state transition", detail="{}")]))
    assert refused == {x.alarm_id}
    assert len(a.history(x.alarm_id)) == 1
    assert [i for i, _ in a.journal_due(grace=30, limit=10)] == []  # t1 is not due yet
    # keyed (trigger) states: the first writer wins the same way
    assert a.commit(Commit(kv=[("trigger:t", {"value": "PROBLEM"}, 0)])) == set()
    assert b.commit(Commit(kv=[("trigger:t", {"value": "OK"}, 0)])) == {"trigger:t"}
    assert a.commit(Commit(kv=[("trigger:t", {"value": "OK"}, 1)])) == set()
    assert b.load_kv("trigger:") == {"trigger:t": ({"value": "OK"}, 2)}


def test_journal_hands_out_what_was_not_published(opener, monkeypatch: pytest.MonkeyPatch) -> None:
    import telemetry.rules.store as store_mod

    store = opener()
    x = alarm()
    store.put_alarms([x])
    monkeypatch.setattr(store_mod, "JOURNAL_GRACE", 0.0)
    if isinstance(store, PostgresRulesStore):
        import telemetry.rules.store_pg as pg_mod

        monkeypatch.setattr(pg_mod, "JOURNAL_GRACE", 0.0)
    store.commit(Commit(alarms=[(x, 0)], records=[record(x.alarm_id, "t1"), record(x.alarm_id, "t2")]))
    store.journal_done(["t1"])  # the writer published t1, then died
    other = opener()
    due = other.journal_due(grace=30)
    assert [i for i, _ in due] == ["t2"] and due[0][1].startswith(b'{"alarm_id"')
    assert other.journal_due(grace=30) == []  # claimed for 30 s: a third server does not take it too
    other.journal_done(["t2"])


def test_changes_report_what_others_wrote(opener) -> None:
    a, b = opener(), opener()
    cursor = b.cursor()
    x, y = alarm("x"), alarm("y")
    a.put_alarm(x)
    a.put_alarms([y])
    changes, cursor = b.changes(cursor)
    assert {c.key for c in changes} == {x.alarm_id, y.alarm_id}
    again, cursor = b.changes(cursor)
    assert {c.key for c in again} <= {x.alarm_id, y.alarm_id}  # may repeat, never miss
    changes, cursor = b.changes(cursor)
    x.state = "alarm"
    assert a.commit(Commit(alarms=[(x, 1)], kv=[("trigger:t", {"value": "PROBLEM"}, 0)])) == set()
    assert a.delete_alarm(y.alarm_id) and not a.delete_alarm(y.alarm_id)
    changes, cursor = b.changes(cursor)
    by_key = {c.key: c for c in changes}
    assert by_key[x.alarm_id].value.state == "alarm" and by_key[x.alarm_id].version == 2
    assert by_key[y.alarm_id].value is None
    assert by_key["trigger:t"].value == {"value": "PROBLEM"}
    assert [s.value.alarm_id for s in b.load_alarms()] == [x.alarm_id]


def test_changes_see_a_transaction_that_commits_after_a_later_one(pg_database) -> None:
    """A writer slower than another (its transaction began first, commits last) is still seen."""
    url = pg_schema_url(pg_database)
    reader, writer = PostgresRulesStore(url), PostgresRulesStore(url)
    try:
        x, y = alarm("x"), alarm("y")
        writer.put_alarms([x, y])
        cursor = reader.cursor()
        _, cursor = reader.changes(cursor)
        with psycopg.connect(url) as slow:
            slow.execute("UPDATE rules_alarms SET state = %s, xact = pg_current_xact_id() WHERE alarm_id = %s",
                         ('{"state": "ok"}', x.alarm_id))
            y.state = "alarm"
            writer.commit(Commit(alarms=[(y, 0)]))
            seen, cursor = reader.changes(cursor)
            assert [c.key for c in seen] == [y.alarm_id]
            slow.commit()
        seen, cursor = reader.changes(cursor)
        assert x.alarm_id in {c.key for c in seen}
    finally:
        reader.close()
        writer.close()


def test_history_has_its_own_retention(opener) -> None:
    store = opener()
    old = AlarmChange(alarm_id="a", type="state transition", detail="{}", timestamp=utcnow() - timedelta(days=40))
    new = AlarmChange(alarm_id="a", type="state transition", detail="{}")
    store.add_changes([old, new, new])  # a replayed batch does not duplicate history
    assert len(store.history("a")) == 2
    assert store.expire_history(30 * 86400) == 1
    assert [c.event_id for c in store.history("a")] == [new.event_id]


def test_api_definitions_bump_the_version(opener) -> None:
    store = opener()
    x = alarm()
    assert store.put_alarm(x) == 1
    x.state = "ok"
    assert store.put_alarm(x) == 2
    assert store.commit(Commit(alarms=[(x, 1)])) == {x.alarm_id}
    [(got, version)] = store.load_alarms()
    assert (got.state, version) == ("ok", 2)
