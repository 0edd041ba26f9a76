"""The literal pre-filter: what it finds, and that it never turns away a text the expression matches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.parse import Parser
from telemetry.parse.literals import required_literals


@pytest.mark.parametrize("pattern,want", [
    ("abc|defg", ("defg", "abc")),
    (r"^\d+ status: \d+$", (" status: ",)),
    ("x(?:abc)?y", None),  # the optional part is not needed; x and y are too short to filter by
    ("(?:abc)+", ("abc",)),
    ("(?:abc)*", None),
    ("(?:abc|d)efgh", ("efgh",)),  # the longer requirement wins
    ("(?i)abcdef", None),  # case folded: `in` would miss ABCDEF
    ("(?i:abc)defg", ("defg",)),
    ("ab[cd]ef", None),  # no run of three
    (r"foo\bbar", ("foobar",)),  # zero-width items do not break the run
    ("(?:GET|PUT|POST|DELETE) /v", (" /v",)),
    ("(?:a1|b2|c3|d4|e5|f6|g7|h8|i9)zz", None),  # nine alternatives, each too short anyway
    ("(?:aaa1|bbb2|ccc3|ddd4|eee5|fff6|ggg7|hhh8|iii9)", None),  # more than eight to look for
    ("(?:aaaa1|bbbb2|cccc3|dddd4|eeee5|ffff6|gggg7|hhhh8|iiii9)xyz", ("xyz",)),  # the usable one wins
])
def test_what_the_analysis_finds(pattern: str, want: tuple[str, ...] | None) -> None:
    assert required_literals(re.compile(pattern)) == want


PIECES = st.sampled_from([*map(re.escape, ["abc", "status: ", "://", "x", "-", " - - [", "HTTP"]),
                          r"\d", r"\d+", "[a-c]", ".", r"\s"])


def _regex() -> st.SearchStrategy[str]:
    def grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.lists(inner, min_size=1, max_size=4).map("".join),
            st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(?:" + "|".join(xs) + ")"),
            inner.map(lambda x: f"(?:{x})?"), inner.map(lambda x: f"(?:{x})+"), inner.map(lambda x: f"(?:{x})*"),
            inner.map(lambda x: f"(?:{x}){{2,3}}"), inner.map(lambda x: f"({x})"),
        )
    return st.recursive(PIECES, grow, max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), pattern=_regex())
def test_every_match_holds_a_required_literal(data: st.DataObject, pattern: str) -> None:
    compiled = re.compile(pattern)
    needs = required_literals(compiled)
    if needs is None:
        return
    text = data.draw(st.from_regex(compiled, fullmatch=False))
    if compiled.search(text):
        assert any(lit in text for lit in needs), (pattern, needs, text)


def test_the_library_filters_soundly_on_every_sample_line(samples_dir: Path) -> None:
    """No line of the sample logs that an expression of the library matches is turned away by its filter."""
    parser = Parser()
    groks = [g for plan in parser._plans.values() for g in (*plan.match, *plan.body, *plan.message_match)]
    groks += parser.header
    filtered = [g for g in groks if g.needs is not None]
    assert any("status: " in "".join(g.needs) for g in filtered)  # the oslo access lines have one
    lines = [line for f in sorted((samples_dir / "logs").iterdir()) for line in f.read_text().splitlines()]
    checked = 0
    for g in filtered:
        assert g.fast is not None
        for line in lines:
            if g.fast.search(line):
                checked += 1
                assert any(lit in line for lit in g.needs), (g.name, line)
    assert checked > 20


def test_a_types_message_match_is_skipped_only_for_messages_without_its_literals() -> None:
    """The type's message_match literals together (``message_needs``) decide whether any of its
    expressions is tried: an access line inside an oslo line is still read, other messages skip them."""
    from telemetry.parse.literals import literals_of_any

    parser = Parser(types=("openstack",))
    plan = parser._plans["openstack"]
    assert plan.message_needs is not None
    for g in plan.message_match:
        assert g.needs is not None and set(g.needs) <= set(plan.message_needs)
    head = "2026-03-02 09:14:21.330 2931 INFO nova.api.openstack.requestlog [req-0c8f2a4e-5b1d-4a7e-9f3c-2d6e8b1a7c94 - - - - -] "
    access = parser.parse_dict(head + '10.0.0.11 "GET /v2.1/servers/detail HTTP/1.1" status: 200 len: 1093 time: 0.0851240',
                               "openstack")
    assert access is not None and (access["status"], access["bytes"], access["method"]) == (200, 1093, "GET")
    plain = parser.parse_dict(head + "Took 14.21 seconds to build instance.", "openstack")
    assert plain is not None and "status" not in plain and plain["tags"] == []
    # One expression of a list without literals: every message is tried, as before the filter.
    assert literals_of_any(g.needs for g in [*plan.message_match, parser.cache.get("%{GREEDYDATA:rest}")]) is None
    assert literals_of_any([]) is None
