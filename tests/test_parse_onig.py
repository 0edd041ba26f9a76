"""Oniguruma syntax in pattern files: translated to what Logstash captures, with no Python warning."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.parse.grok import Grok, GrokError
from telemetry.parse.onig import translate
from telemetry.parse.patterns import load_pattern_dirs, parse_pattern_text

LIB = load_pattern_dirs([])

#: An operator's own pattern file, written the way Logstash's files are (Oniguruma syntax).
OPERATOR_FILE = r"""
# POSIX bracket classes, alone and inside a larger set, negated, and a nested set
MYPATH (?:/[[[:alnum:]]_.+~-]*)+
LABEL [[:alpha:]][[:alnum:]]*
NOTDIGITS [[:^digit:]]+
SPACED [^[:space:]]+
HEXISH \h+[[:xdigit:]]*
CONSONANTS [a-z&&[^aeiou]]+
# stacked quantifiers, as in logstash-patterns-core's SHOREWALL
STACKED LEN=(%{WORD:len}).?*TOS=(%{WORD:tos})
TWICE (?:ab){1}+
# atomic groups and possessive quantifiers
ATOMIC (?>"(?>\\.|[^\\"]+)+")
POSSESSIVE \d++x
# the named-group forms Logstash accepts
ANGLE (?<user>\w+)@(?'domain'[\w.]+)
NESTED (?<[http][verb]>[A-Z]+) %{INT:[http][status]:int}
BACKREF (?<quote>["'])(?<text>.*?)\k<quote>
# an isolated option covers the rest of its group, alternatives included
ISOLATED x(?i)ab|cd
# an operator's own level list
AUDITLOGLEVEL (?:AUDIT|NOTICE|[Aa]udit)
"""


@pytest.fixture(scope="module")
def pats() -> dict[str, str]:
    return {**LIB, **parse_pattern_text(OPERATOR_FILE)}


@pytest.mark.parametrize("expr,line,want", [
    ("%{MYPATH:p}", "/var/lib/nova/instances/été-x_1 rest", {"p": "/var/lib/nova/instances/été-x_1"}),
    ("^%{LABEL:l}$", "nova2", {"l": "nova2"}),
    ("^%{LABEL:l}$", "_nova", None),
    ("^%{NOTDIGITS:n}", "ab12", {"n": "ab"}),
    ("^%{SPACED:s}", "a-b c", {"s": "a-b"}),
    ("^%{HEXISH:h}", "beefG", {"h": "beef"}),
    ("^%{CONSONANTS:c}", "bcdea", {"c": "bcd"}),
    ("%{STACKED}", "LEN=141 TOS=0x00", {"len": "141", "tos": "0x00"}),
    ("^%{TWICE:t}$", "abab", {"t": "abab"}),
    ("^%{ATOMIC:a}", '"a \\" b" tail', {"a": '"a \\" b"'}),
    ("^%{POSSESSIVE:p}", "123x", {"p": "123x"}),
    ("^%{ANGLE}$", "nova@example.org", {"user": "nova", "domain": "example.org"}),
    ("^%{NESTED}$", "GET 404", {"http": {"verb": "GET", "status": 404}}),
    ("^%{BACKREF}$", "'it \"is\"'", {"quote": "'", "text": 'it "is"'}),
    ("^%{ISOLATED:i}$", "xAB", {"i": "xAB"}),
    ("^%{ISOLATED:i}$", "xCD", {"i": "xCD"}),  # x(?i)ab|cd is x(?i:ab|cd) in Oniguruma
    ("^%{ISOLATED:i}$", "cd", None),
    ("^%{AUDITLOGLEVEL:level}", "AUDIT x", {"level": "AUDIT"}),
    (r"^\x{41}\u0042\cC\e", "AB\x03\x1b", {}),
])
def test_oniguruma_constructs_capture_as_logstash(pats: dict[str, str], expr: str, line: str, want: dict | None) -> None:
    g = Grok(expr, pats)
    assert g.match(line) == want
    assert g.match(line, 0.25) == want  # the regex module's copy (its own timeout) agrees


def test_untranslatable_constructs_fail_at_load_naming_them(tmp_path: Path) -> None:
    cases = {
        r"CALL (?<a>x)\g<a>": r"subexpression call",
        r"ABSENT (?~foo)": "absent operator",
        r"NUMBERED (a)\1": r"numbered back-reference \\1",
        r"UNCLOSED [abc": "unterminated character class",
        r"POSIX [[:nope:]]": r"unknown POSIX class \[:nope:\]",
    }
    for i, (line, why) in enumerate(cases.items()):
        f = tmp_path / f"p{i}"
        f.write_text(f"# mine\nGOOD \\w+\n{line}\n")
        with pytest.raises(GrokError, match=rf"{f}:3: pattern {line.split()[0]}: .*{why}"):
            load_pattern_dirs([tmp_path], builtin=False)
        f.unlink()


def test_pygrok_copy_of_logstash_patterns_all_compile_on_the_fast_engine() -> None:
    import pygrok

    patterns = load_pattern_dirs([Path(pygrok.__file__).parent / "patterns"], builtin=False)
    slow = [name for name in patterns if Grok("%{" + name + "}", patterns).fast is None]
    assert slow == []  # SHOREWALL (stacked quantifiers) included


def test_no_warning_reaches_the_terminal(tmp_path: Path) -> None:
    (tmp_path / "ops").write_text(OPERATOR_FILE)
    code = (
        "import sys; from telemetry.parse import Parser\n"
        f"p = Parser(patterns_dirs=[{str(tmp_path)!r}], patterns=['%{{MYPATH:p}} %{{STACKED}}'])\n"
        "d = p.parse_dict('/a/b_c LEN=1 TOS=2', now=None, with_id=False)\n"
        "print(d['p'], d['len'], d['tos'])\n"
    )
    run = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["/a/b_c", "1", "2"] and run.stderr == ""
    out = subprocess.run([sys.executable, "-W", "error", "-m", "telemetry", "parse", "--patterns-dir", str(tmp_path),
                          "-p", "%{CONSONANTS:c}"], input="xyz\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "" and '"c":"xyz"' in out.stdout


# -- properties ---------------------------------------------------------------------------------
_ATOMS = st.sampled_from([
    "a", "b", ".", r"\d", r"\w", r"\h", r"\s", "[a-z]", "[[:alnum:]_]", "[^[:space:]]", "[a-z&&[^b]]", "(", ")",
    "(?:", "(?>", "(?<n>", "(?'m'", "(?<[x][y]>", "(?i)", "(?m:", "*", "+", "?", "*+", "??", "{2}", "{1,3}", "{,2}",
    "{", "}", "|", "^", "$", r"\z", r"\k<n>", "%{WORD}", "%{INT:i:int}", "%{NOPE}", "%{", "[", "]", "\\", "&&",
    "[[:bad:]]", r"\p{L}", r"\x{263a}", r"\1", "(?#c)", "(?~x)",
])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ATOMS, max_size=14).map("".join), st.text(max_size=40))
def test_any_expression_compiles_or_fails_with_a_named_error(expr: str, line: str) -> None:
    try:
        g = Grok(expr, LIB, "prop")
    except GrokError as exc:
        assert "prop" in str(exc)
        return
    g.match(line, 0.05)  # never raises but GrokTimeout, never hangs past the budget


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_translates_or_fails_cleanly(text: str) -> None:
    try:
        translate(text)
    except ValueError:
        pass
    try:
        parse_pattern_text(f"X {text}\n", "prop")
    except GrokError as exc:
        assert re.match(r"prop:\d+: pattern \S+: ", str(exc))  # the text may hold line breaks of its own
