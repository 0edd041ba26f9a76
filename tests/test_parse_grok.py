"""The grok compiler: Logstash syntax, capture shapes, errors, and the time budget."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from telemetry.parse import TIMEOUT_TAG, GrokError, GrokTimeout, Parser
from telemetry.parse.grok import Grok
from telemetry.parse.patterns import load_pattern_dirs, parse_pattern_text

LIB = load_pattern_dirs([])


def match(expr: str, text: str, patterns: dict[str, str] | None = None) -> dict | None:
    return Grok(expr, patterns or LIB).match(text)


def test_nested_typed_and_repeated_captures() -> None:
    caps = match("%{WORD:[http][method]} %{INT:[http][status]:int} %{NUMBER:took:float} %{WORD:tag} %{WORD:tag}",
                 "GET 404 0.25 a b")
    assert caps == {"http": {"method": "GET", "status": 404}, "took": 0.25, "tag": ["a", "b"]}


def test_unmatched_optional_capture_is_left_out() -> None:
    assert match("%{WORD:a}(?: %{INT:b})?", "x") == {"a": "x"}


def test_a_capture_that_matched_nothing_is_left_out_as_logstash_does() -> None:
    """Logstash's grok filter (keep_empty_captures false) sets no field for an empty value, on every
    path: flat names, nested ones, converted ones, a name captured twice, the regex engine's."""
    assert match("%{WORD:a}:%{DATA:b}:%{WORD:c}", "x::z") == {"a": "x", "c": "z"}
    assert match("%{WORD:a}:%{DATA:[n][b]}:", "x::") == {"a": "x"}
    assert match("%{WORD:a}:(?<n>[0-9]*):", "x::") == {"a": "x"}
    assert match("%{WORD:a}:(?<n>[0-9]*):%{WORD:a}", "x::y") == {"a": ["x", "y"]}
    assert match("%{DATA:t}/%{DATA:t}/", "x//") == {"t": "x"}  # one value: no list of one
    assert match("%{DATA:t}/%{DATA:t}/", "x/y/") == {"t": ["x", "y"]}
    assert match(r"%{WORD:a}:(?<n>\d*):%{INT:i:int}", "x::7") == {"a": "x", "i": 7}
    slow = Grok("(?<a>x)(?<e>y*)(?<=x|zx)", LIB)  # a variable-width look-behind: the regex module's engine
    assert slow.fast is None and slow.match("x") == {"a": "x"}
    # The whole line is then the event's message when the expression's own message is empty.
    event = Parser(patterns=["%{WORD:word} ?%{GREEDYDATA:message}"]).parse_dict("lonely", "")
    assert event is not None and event["message"] == "lonely" and event["word"] == "lonely"


def test_inline_named_captures_and_nested_definitions() -> None:
    pats = {**LIB, **parse_pattern_text("# comment\nPAIR (?<key>\\w+)=%{INT:[kv][value]:int}\n\nBROKEN_LINE\n")}
    assert "BROKEN_LINE" not in pats  # like Logstash, a line without a regex is skipped
    assert match("%{PAIR} (?<[kv][rest]>.*)", "a=5 tail", pats) == {"key": "a", "kv": {"value": 5, "rest": "tail"}}
    # SYSLOGBASE's inner captures are fields though the reference is unnamed
    caps = match("%{SYSLOGBASE}", "Mar  2 09:00:05 cn01 systemd[1]:")
    assert caps == {"timestamp": "Mar  2 09:00:05", "logsource": "cn01", "program": "systemd", "pid": "1"}


def test_character_classes_and_escapes_are_not_references() -> None:
    assert match(r"[%{]+\[(?<x>[^\]]+)\]", "%{[a]") == {"x": "a"}
    assert match(r"\h+", "beef") == {}


def test_oniguruma_m_flag_is_dotall() -> None:
    assert match("(?m)%{WORD:a}.*%{WORD:b}$", "one\ntwo") == {"a": "one", "b": "two"}


def test_compile_errors_name_the_pattern_and_the_reference() -> None:
    with pytest.raises(GrokError, match=r"undefined pattern %\{NOPE\}"):
        Grok("%{WORD} %{NOPE:x}", LIB)
    pats = {**LIB, "OUTER": "%{INNER}", "INNER": "x%{MISSING}"}
    with pytest.raises(GrokError, match=r"undefined pattern %\{MISSING\} \(in %\{INNER\}\)"):
        Grok("%{OUTER}", pats, "mine")
    with pytest.raises(GrokError, match="recursive reference"):
        Grok("%{LOOP}", {"LOOP": "a%{LOOP}"})
    with pytest.raises(GrokError, match=r"missing '\)' to close the group opened at offset 0"):
        Grok("(%{WORD}", LIB)
    with pytest.raises(GrokError, match="not a valid regular expression"):
        Grok(r"\p{NoSuchProperty}", LIB)


def test_break_on_match_and_user_patterns_do_not_normalise() -> None:
    p = Parser(patterns=["%{INT:a:int}", "%{WORD:level}"])
    ev = p.parse("warn")
    assert ev.level == "warn" and ev.tags == []  # a user's capture is kept as captured
    assert p.parse("12 x").to_dict()["a"] == 12 and "level" not in (p.parse("12 x").model_extra or {})


# A naive CSV pattern: every lazy DATA may end at any comma, so a line where the
# last literal never comes after the fields makes the engine try all the splits.
CATASTROPHIC = "^" + ",".join(f"%{{DATA:{c}}}" for c in "abcdefghijkl") + ";END"
#: ";END" is in the line (before the fields), so the literal pre-filter lets the engine run.
CATASTROPHIC_LINE = ";END" + ",".join(str(i) for i in range(60))


def test_catastrophic_backtracking_is_cut_by_the_budget() -> None:
    line = CATASTROPHIC_LINE
    with pytest.raises(GrokTimeout):
        Grok(CATASTROPHIC, LIB).match(line, timeout=0.05)
    parser = Parser(patterns=[CATASTROPHIC], timeout=0.1)
    start = time.monotonic()
    ev = parser.parse(line)
    elapsed = time.monotonic() - start
    assert elapsed < 1.5, elapsed  # the budget, plus the engine's check interval on a busy machine
    assert ev.tags == [TIMEOUT_TAG] and ev.message == line
    # and the parser goes on with the next entry
    assert Parser(timeout=0.1).parse("Mar  2 09:00:05 cn01 systemd[1]: ok", "syslog").tags == []


def test_a_line_without_a_required_literal_is_no_match_without_the_engine() -> None:
    """The same line without ";END" anywhere: no split can match, and the pre-filter says so at
    once (the engine would have spent the whole budget), with the same answer: no match."""
    g = Grok(CATASTROPHIC, LIB)
    assert g.needs == (";END",)
    start = time.monotonic()
    assert g.match(",".join(str(i) for i in range(60)), timeout=5.0) is None
    assert time.monotonic() - start < 0.05
    assert g.match("1,2,3,4,5,6,7,8,9,10,11,12;END") == dict(zip("abcdefghijkl", map(str, range(1, 13))))


def test_patterns_dir_overrides_the_library(tmp_path: Path) -> None:
    (tmp_path / "mine").write_text("WORD [a-z]+\nMINE %{WORD:w}!\n")
    p = Parser(patterns_dirs=[tmp_path], patterns=["%{MINE}"])
    assert p.parse("abc!").to_dict()["w"] == "abc"
    with pytest.raises(FileNotFoundError):
        Parser(patterns_dirs=[tmp_path / "nope"])


def test_parser_compiles_only_the_types_it_is_asked_for() -> None:
    """`telemetry parse -t` compiles the one type it reads (compiling every type's expressions was
    half the command's start); a syslog type keeps them all: each header's program picks its message's."""

    full = Parser()
    one = Parser(types=["nova"])  # an alias of openstack
    assert set(one._plans) == {"openstack"} and len(full._plans) > 10
    assert one.types == full.types  # what the library knows, compiled or not
    line = "2026-03-02 09:14:07.112 2931 INFO nova.compute.manager [req-1 - - - - -] Claim successful"
    assert one.parse_dict([line], "openstack", with_id=False) == full.parse_dict([line], "openstack", with_id=False)
    assert set(Parser(types=["syslog"])._plans) == set(full._plans)
    assert not Parser(patterns=["%{WORD:w}"], types=())._plans
