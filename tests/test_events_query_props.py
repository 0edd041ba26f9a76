"""The query language's implicit operator (a setting), and any string parses or fails with a QueryError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.config import Settings
from telemetry.events.predicate import compile_predicate
from telemetry.events.query import And, Or, QueryError, Term, parse_query, set_default_operator
from telemetry.events.sql import compile_query


def test_juxtaposition_is_and_by_default_or_when_configured() -> None:
    a, b, c = Term("level", "ERROR"), Term("component", "nova"), Term(None, "spawn")
    assert parse_query("level:ERROR component:nova") == And((a, b))
    assert parse_query("level:ERROR component:nova", "OR") == Or((a, b))
    assert parse_query("level:ERROR component:nova AND spawn", "OR") == Or((a, And((b, c))))
    assert parse_query("(level:ERROR component:nova) spawn", "OR") == Or((Or((a, b)), c))
    assert parse_query("level:ERROR -component:nova", "OR").items[1].__class__.__name__ == "Not"  # type: ignore[union-attr]
    try:
        set_default_operator("OR")
        assert compile_predicate("level:ERROR component:nova")({"level": "ERROR", "component": "glance"})
    finally:
        set_default_operator("AND")
    assert not compile_predicate("level:ERROR component:nova")({"level": "ERROR", "component": "glance"})
    assert Settings.model_validate({"store": {"events": {"default_operator": "OR"}}}).store.events.default_operator == "OR"
    with pytest.raises(ValueError):
        Settings.model_validate({"store": {"events": {"default_operator": "XOR"}}})


_TOKENS = st.sampled_from(["a", "b", "level:", "ERROR", "AND", "OR", "NOT", "&&", "||", "!", "-", "+", "(", ")",
                           '"', '"x y"', "[", "]", "{", "}", " TO ", "*", "?", ":", "\\", ">=", "<", "@timestamp:",
                           "now-1h", " ", "status:[500 TO 599]", "é"])


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(_TOKENS, max_size=12).map("".join)),
       st.sampled_from(["AND", "OR"]))
def test_any_string_parses_or_names_its_position(text: str, op: str) -> None:
    for step in (lambda: parse_query(text, op), lambda: compile_query(text), lambda: compile_predicate(text)):
        try:
            step()
        except QueryError as exc:  # the only error a query may raise, naming where
            assert 1 <= exc.position <= len(text) + 1
            return
