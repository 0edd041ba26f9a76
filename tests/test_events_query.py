"""The query language: what parses to what, what SQL it becomes, and errors that name the position."""

from __future__ import annotations

import pytest

from telemetry.events.query import And, Exists, Not, Or, QueryError, Range, Term, parse_query
from telemetry.events import sql, sql_pg
from telemetry.events.sql import compile_query

#: The SQL compilers of both backends: each must refuse the same queries and splice no value.
COMPILERS = pytest.mark.parametrize("compile_sql", [sql.compile_query, sql_pg.compile_query], ids=["sqlite", "postgresql"])


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("", None),
        ("component:glance", Term("component", "glance")),
        ("type:openstack AND component:glance", And((Term("type", "openstack"), Term("component", "glance")))),
        ("level:ERROR component:nova", And((Term("level", "ERROR"), Term("component", "nova")))),
        ('"failed to spawn"', Term(None, "failed to spawn", phrase=True)),
        ('message:"No valid host"', Term("message", "No valid host", phrase=True)),
        ("component:nova*", Term("component", "nova*", wildcard=True)),
        ("status:[500 TO 599]", Range("status", "500", "599")),
        ("status:{500 TO *]", Range("status", "500", None, include_low=False)),
        ("status:>=500", Range("status", "500", None)),
        ("status:<500", Range("status", None, "500", include_high=False)),
        ("@timestamp:[2026-03-02T09:00:00 TO now]", Range("@timestamp", "2026-03-02T09:00:00", "now")),
        ("instance_id:*", Exists("instance_id")),
        ("NOT level:INFO", Not(Term("level", "INFO"))),
        ("-level:INFO", Not(Term("level", "INFO"))),
        ("a OR b AND c", Or((Term(None, "a"), And((Term(None, "b"), Term(None, "c")))))),
        ("(a OR b) AND c", And((Or((Term(None, "a"), Term(None, "b"))), Term(None, "c")))),
        ("component:(nova OR neutron)", Or((Term("component", "nova"), Term("component", "neutron")))),
        ("request_id:req-7d1e2a40-5b3c", Term("request_id", "req-7d1e2a40-5b3c")),
        (r"path:C\:\\logs", Term("path", r"C:\logs")),
        ("a and b", And((Term(None, "a"), Term(None, "and"), Term(None, "b")))),  # operators are upper case
    ],
)
def test_each_form_parses(text: str, tree: object) -> None:
    assert parse_query(text) == tree


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("level:ERROR AND", 16, "ends where a term was expected"),
        ("(level:ERROR", 1, "missing ')'"),
        ("level:ERROR)", 12, "unbalanced ')'"),
        ('message:"unterminated', 9, "unterminated quoted phrase"),
        ("status:[500 599]", 13, "expected 'TO'"),
        ("status:[500 TO 599", 1 + len("status:"), "expected ']' or '}'"),
        ("level:", 7, "expected a value after 'level:'"),
        ("AND level:ERROR", 1, "'AND' needs a term before it"),
        ("comp*nent:nova", 1, "invalid field name"),
        ("a OR ()", 6, "empty group"),
        ("@timestamp:[yesterday TO now]", 13, "not a time"),
        ("level:ERROR AND @timestamp:2026-03*", 28, "wildcards do not apply"),
        ('"ab\x00c" x', 4, "NUL character"),  # FTS5 would read a C string cut at the NUL (found by the API fuzz test)
        ("\x00", 1, "NUL character"),
    ],
)
@COMPILERS
def test_bad_queries_name_the_position(text: str, position: int, words: str, compile_sql) -> None:
    with pytest.raises(QueryError) as exc:
        compile_sql(text)
    assert exc.value.position == position, str(exc.value)
    assert words in str(exc.value)
    assert f"at position {position}" in str(exc.value)
    assert exc.value.pointer().splitlines()[1] == " " * (position - 1) + "^"


@COMPILERS
def test_values_never_reach_the_sql_text(compile_sql) -> None:
    hostile = "x' OR 1=1 --"
    for text in (f'component:"{hostile}"', f'"{hostile}"', f'weird:"{hostile}"', f'status:["{hostile}" TO *]',
                 'component:"a%b_c*"', f'"{hostile}*"', f'weird.field:"{hostile}"*'):
        compiled = compile_sql(text)
        assert "1=1" not in compiled.where and "a%b" not in compiled.where
        assert any(hostile in str(p) or p == "a%b_c*" for p in compiled.params)  # quoted: no wildcard


def test_level_is_case_folded_and_wildcards_become_like() -> None:
    assert compile_query("level:error").params == ["ERROR"]
    c = compile_query("component:nova?api*")
    assert "LIKE" in c.where and c.params == ["nova_api%"]


def test_postgresql_compares_text_through_lower_and_words_through_the_tsvector() -> None:
    c = sql_pg.compile_query("level:error")
    assert c.params == ["ERROR", "ERROR"] and "lower(e.level)" in c.where
    c = sql_pg.compile_query("component:nova?api*")
    assert "ILIKE" in c.where and c.params == ["nova_api%"]
    c = sql_pg.compile_query('"failed to spawn" AND spaw*')
    assert c.where.count("e.tsv @@") == 2 and c.params == ["failed to spawn", "spaw"]
    assert sql_pg.compile_query('"--"').where == "false"  # no word in it: FTS5 and the predicate match nothing
