"""Logstash's regex dialect (Oniguruma, Ruby syntax) translated for Python's engines.

Logstash compiles grok with Joni, a port of Oniguruma, and the pattern files
operators drop in are written for it. Python's ``re`` reads several of its
constructs differently or not at all, and printed ``FutureWarning: Possible
nested set`` while doing so. Each definition is therefore translated once, by
a small scanner that knows what Oniguruma means:

* POSIX bracket classes (``[[:alnum:]]``), nested sets (``[a[bc]]``) and set
  intersection (``[a-z&&[^aeiou]]``); ``\\h`` / ``\\H`` (hex digits).
* Stacked quantifiers: ``.?*`` is ``(?:.?)*`` and ``{2}+`` is ``(?:{2})+``
  (Ruby's interval is never possessive); ``*+``, ``++``, ``?+`` stay
  possessive and ``(?>...)`` atomic (both native in Python 3.11).
* Named groups in every form Logstash accepts: ``(?<name>``, ``(?'name'``,
  ``(?P<name>`` and field references ``(?<[nested][name]>``; ``\\k<name>``
  back-references; ``(?(<name>)yes|no)`` conditionals.
* Isolated options: ``a(?i)b|c`` is ``a(?i:b|c)`` as in Oniguruma, and
  ``(?m)`` is "dot matches newline" (Python's ``s``).
* Escapes: ``\\z`` ``\\Z`` ``\\R`` ``\\N`` ``\\O`` ``\\e`` ``\\cX`` ``\\x{HHHH}``,
  and an unknown letter escape is the letter itself.

Plain ``( )`` groups do not capture (Oniguruma's rule once named groups
exist, and grok captures by name only). Constructs only the ``regex`` module
understands (Unicode POSIX classes such as ``[:upper:]``, ``\\p{...}``,
``\\G``, ``\\K``, ``\\X``, backtracking verbs) mark the translation
``needs_regex``. What neither engine can do (subexpression calls, the absent
operator, numbered back-references) raises UntranslatableError naming the
construct and its position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["BackRef", "CondRef", "Named", "Ref", "Token", "Translated", "UntranslatableError", "translate"]

#: ``%{SYNTAX}``, ``%{SYNTAX:semantic}``, ``%{SYNTAX:semantic:type}`` (as jls-grok reads them).
REFERENCE = re.compile(
    r"%\{(?P<syntax>[A-Za-z0-9_]+)(?::(?P<semantic>[^:}]+))?(?::(?P<conv>int|integer|float))?\}"
)
_LOOSE_REFERENCE = re.compile(r"%\{[^}]*\}?")
_INTERVAL = re.compile(r"\{(\d*)(,?)(\d*)\}")
_FLAGS = re.compile(r"\(\?([imxaus]*)(?:-([imxs]*))?([:)])")
_POSIX = re.compile(r"\[:(\^?)([a-z]+):\]")
#: Oniguruma's limit on a repeat count (ONIG_MAX_REPEAT_NUM).
MAX_REPEAT = 100_000


class UntranslatableError(ValueError):
    """A construct with no equivalent in Python's engines; the message names it and where it is."""


@dataclass(frozen=True)
class Ref:
    """``%{SYNTAX:semantic:conv}``."""

    syntax: str
    semantic: str | None
    conv: str | None


@dataclass(frozen=True)
class Named:
    """Opens a named capture ``(?<name>``; the expander gives it a group of its own."""

    name: str


@dataclass(frozen=True)
class BackRef:
    """``\\k<name>``."""

    name: str


@dataclass(frozen=True)
class CondRef:
    """Opens ``(?(<name>)``: a conditional on whether the named group took part."""

    name: str


Token = str | Ref | Named | BackRef | CondRef


@dataclass(frozen=True)
class Translated:
    tokens: tuple[Token, ...]
    needs_regex: bool
    has_captures: bool


_cache: dict[str, Translated] = {}


def translate(text: str) -> Translated:
    """The tokens of one pattern definition or expression (memoised: files share definitions)."""
    found = _cache.get(text)
    if found is None:
        found = _Translator(text).run()
        if len(_cache) < 50_000:
            _cache[text] = found
    return found


# -- character classes ------------------------------------------------------------------------
#: POSIX classes Python's ``re`` can express inside a set (as Unicode-aware members).
_POSIX_RE = {"digit": "\\d", "space": "\\s", "word": "\\w", "xdigit": "0-9A-Fa-f", "blank": " \\t",
             "cntrl": "\\x00-\\x1f\\x7f", "ascii": "\\x00-\\x7f"}
_POSIX_NEG_RE = {"digit": "\\D", "space": "\\S", "word": "\\W"}
#: Only the ``regex`` module has these as Unicode classes.
_POSIX_REGEX = frozenset({"upper", "lower", "punct", "graph", "print"})
_ALNUM, _ALPHA = "[^\\W_]", "[^\\W\\d_]"
_CLASS_SPECIAL = set("\\]^-[&~|")


def _class_char(cp: int) -> str:
    """One code point as a set member that no engine reads as syntax."""
    ch = chr(cp)
    if ch in _CLASS_SPECIAL:
        return "\\" + ch
    if 0x20 < cp < 0x7F or (cp > 0x9F and ch.isprintable()):
        return ch
    if cp <= 0xFF:
        return f"\\x{cp:02x}"
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


def _literal(cp: int) -> str:
    """One code point as a literal outside a set."""
    ch = chr(cp)
    if ch.isalnum() or ch in " _":
        return ch
    if 0x20 < cp < 0x7F:
        return "\\" + ch
    return _class_char(cp) if ch not in _CLASS_SPECIAL else "\\" + ch


@dataclass
class _Set:
    """One bracket expression being read: plain members, and single-character matchers beside them."""

    negated: bool = False
    members: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    underscore: bool = False  # "_" (or \w) is a member: alnum then folds into \w
    alnum: bool = False
    alpha: bool = False

    def positive(self) -> str:
        """The set without its negation, as one single-character matcher."""
        members = list(self.members)
        parts = list(self.parts)
        if self.alnum:
            if self.underscore:
                members.append("\\w")
            else:
                parts.append(_ALNUM)
        if self.alpha:
            parts.append(_ALPHA)
        alts = ([f"[{''.join(members)}]"] if members else []) + parts
        if not alts:
            return "(?!)"
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    def simple(self) -> bool:
        return not self.parts and not self.alnum and not self.alpha

    def emit(self) -> str:
        if not self.negated:
            return self.positive()
        if self.simple() and self.members:
            return f"[^{''.join(self.members)}]"
        return f"(?:(?!{self.positive()})(?s:.))"


class _Translator:
    def __init__(self, text: str) -> None:
        self.t = text
        self.n = len(text)
        self.i = 0
        self.out: list[Token] = []
        self.frames: list[list[int]] = []  # [opening token's index, isolated options opened, text offset]
        self.top_extra = 0
        self.atom: int | None = None  # where the last quantifiable atom starts in out
        self.quantified = False
        self.needs_regex = False
        self.captures = False

    def fail(self, what: str, at: int | None = None) -> UntranslatableError:
        pos = self.i if at is None else at
        return UntranslatableError(f"{what} at offset {pos} ({self.t[pos:pos + 16]!r})")

    def add_atom(self, tok: Token) -> None:
        self.atom = len(self.out)
        self.quantified = False
        self.out.append(tok)

    def add_anchor(self, tok: str) -> None:
        self.atom = None
        self.out.append(tok)

    def run(self) -> Translated:
        t = self.t
        while self.i < self.n:
            c = t[self.i]
            if c == "\\":
                self.escape()
            elif c == "[":
                start = self.i
                s, self.i = self.read_set(self.i)
                try:
                    self.add_atom(s.emit())
                except RecursionError:
                    raise self.fail("character class nested too deeply", start) from None
            elif c == "%" and t.startswith("%{", self.i):
                m = REFERENCE.match(t, self.i)
                if m is None:
                    bad = _LOOSE_REFERENCE.match(t, self.i)
                    raise UntranslatableError(f"malformed reference {bad.group(0) if bad else t[self.i:]!r}")
                conv = m.group("conv")
                self.add_atom(Ref(m.group("syntax"), m.group("semantic"), "int" if conv == "integer" else conv))
                self.captures = self.captures or m.group("semantic") is not None
                self.i = m.end()
            elif c == "(":
                self.open_group()
            elif c == ")":
                self.close_group()
            elif c in "*+?":
                self.quantifier()
            elif c == "{":
                if _interval(t, self.i) is None:
                    self.add_atom("\\{")
                    self.i += 1
                else:
                    self.quantifier()
            elif c == "|":
                self.add_anchor("|")
                self.i += 1
            elif c in "^$":
                self.add_anchor(c)
                self.i += 1
            elif c == ".":
                self.add_atom(".")
                self.i += 1
            else:
                self.add_atom("\\}" if c == "}" else c if c.isalnum() or c in " _" else _literal(ord(c)))
                self.i += 1
        if self.frames:
            raise self.fail("missing ')' to close the group opened", self.frames[-1][2])
        self.out.append(")" * self.top_extra)
        return Translated(tuple(x for x in self.out if x != ""), self.needs_regex, self.captures)

    # -- quantifiers ----------------------------------------------------------------------------
    def quantifier(self) -> None:
        t, i = self.t, self.i
        if t[i] == "{":
            m = _interval(t, i)
            assert m is not None
            lo, comma, hi = m.groups()
            if any(x and int(x) > MAX_REPEAT for x in (lo, hi)):
                raise self.fail(f"repeat count over {MAX_REPEAT} (Oniguruma's limit)")
            if lo and hi and int(lo) > int(hi):
                raise self.fail("repeat range upside down")
            q, j, interval = "{" + (lo or "0") + comma + hi + "}", m.end(), True
        else:
            q, j, interval = t[i], i + 1, False
        if j < self.n and t[j] == "?":
            q, j = q + "?", j + 1  # lazy
        elif j < self.n and t[j] == "+" and not interval:
            q, j = q + "+", j + 1  # possessive (Ruby: X{n,m}+ is a second quantifier, handled below)
        if self.atom is None:
            raise self.fail(f"quantifier {q!r} has nothing to repeat")
        if self.quantified:
            # Oniguruma stacks quantifiers (.?* is (?:.?)*); Python refuses "multiple repeat".
            self.out.insert(self.atom, "(?:")
            self.out.append(")")
        self.out.append(q)
        self.quantified = True
        self.i = j

    # -- groups ---------------------------------------------------------------------------------
    def open_group(self) -> None:
        t, i = self.t, self.i
        if t.startswith("(?#", i):
            end = t.find(")", i)
            if end < 0:
                raise self.fail("unterminated comment group")
            self.i = end + 1
            return
        tok: Token
        if t.startswith("(?", i):
            nxt = t[i + 2:i + 3]
            if nxt in (":", "=", "!", ">"):
                tok, j = t[i:i + 3], i + 3
            elif t.startswith("(?<=", i) or t.startswith("(?<!", i):
                tok, j = t[i:i + 4], i + 4
            elif nxt in ("<", "'") or t.startswith("(?P<", i):
                start = i + (4 if nxt == "P" else 3)
                close = "'" if nxt == "'" else ">"
                end = t.find(close, start)
                if end < 0 or end == start:
                    raise self.fail("unterminated or empty group name")
                tok, j = Named(t[start:end]), end + 1
                self.captures = True
            elif nxt == "(":
                tok, j = self.condition(i)
            elif nxt == "~":
                raise self.fail("the absent operator (?~...) has no Python equivalent")
            else:
                m = _FLAGS.match(t, i)
                if m is None or not (m.group(1) or m.group(2)):
                    raise self.fail("unknown group syntax")
                on = m.group(1).replace("m", "s")
                off = (m.group(2) or "").replace("m", "s")
                flags = on + ("-" + off if off else "")
                if set(on) & set(off):
                    raise self.fail("an option both set and cleared")
                if m.group(3) == ")":
                    # Isolated option: Oniguruma applies it to the rest of the enclosing group.
                    self.out.append(f"(?{flags}:")
                    if self.frames:
                        self.frames[-1][1] += 1
                    else:
                        self.top_extra += 1
                    self.atom = None
                    self.i = m.end()
                    return
                tok, j = f"(?{flags}:", m.end()
        elif t.startswith("(*", i):
            end = t.find(")", i)
            if end < 0:
                raise self.fail("unterminated verb")
            self.needs_regex = True  # (*FAIL), (*SKIP), (*PRUNE): the regex module's
            self.add_atom(t[i:end + 1])
            self.i = end + 1
            return
        else:
            tok, j = "(?:", i + 1  # plain groups never capture in grok
        self.frames.append([len(self.out), 0, i])
        self.out.append(tok)
        self.atom = None
        self.i = j

    def condition(self, i: int) -> tuple[Token, int]:
        m = re.compile(r"\(\?\((?:<([^>]+)>|'([^']+)'|([A-Za-z_]\w*))\)").match(self.t, i)
        if m is None:
            raise self.fail("conditional on a numbered group (grok captures by name only)")
        return CondRef(m.group(1) or m.group(2) or m.group(3)), m.end()

    def close_group(self) -> None:
        if not self.frames:
            raise self.fail("unbalanced ')'")
        start, extra, _ = self.frames.pop()
        self.out.append(")" * extra + ")")
        self.atom = start
        self.quantified = False
        self.i += 1

    # -- escapes --------------------------------------------------------------------------------
    def escape(self) -> None:
        t, i = self.t, self.i
        if i + 1 >= self.n:
            raise self.fail("a lone backslash at the end")
        e = t[i + 1]
        self.i = i + 2
        simple = {"h": "[0-9a-fA-F]", "H": "[^0-9a-fA-F]", "N": "[^\\n]", "O": "(?s:.)", "e": "\\x1b",
                  "R": "(?:\\r\\n|[\\n\\x0b\\x0c\\r\\x85\\u2028\\u2029])"}
        if e in simple:
            self.add_atom(simple[e])
        elif e in "dDwWsStnrfva":
            self.add_atom("\\" + e)
        elif e in "bBA":
            self.add_anchor("\\" + e)
        elif e == "z":
            self.add_anchor("\\Z")
        elif e == "Z":
            self.add_anchor("(?=\\n?\\Z)")
        elif e in "GK":
            self.needs_regex = True
            self.add_anchor("\\" + e)
        elif e == "X":
            self.needs_regex = True
            self.add_atom("\\X")
        elif e in "pP":
            self.add_atom(self.property(e))
        elif e == "k":
            m = re.compile(r"<([^>]+)>|'([^']+)'").match(t, self.i)
            if m is None:
                raise self.fail("malformed back-reference \\k", i)
            name = m.group(1) or m.group(2)
            if name.lstrip("+-").isdigit():
                raise self.fail("numbered back-reference (grok captures by name only)", i)
            self.add_atom(BackRef(name))
            self.i = m.end()
        elif e == "g":
            raise self.fail("subexpression call \\g<...> has no Python equivalent", i)
        elif e in "123456789":
            raise self.fail(f"numbered back-reference \\{e} (grok captures by name only: use \\k<name>)", i)
        elif e in "CM":
            raise self.fail(f"\\{e}-x control/meta escape has no Python equivalent", i)
        else:
            cp = self.code_point(e, i)
            self.add_atom(_literal(cp))

    def code_point(self, e: str, at: int) -> int:
        """The character an escape names (``\\x41``, ``\\x{263a}``, ``\\u263a``, ``\\0``, ``\\cA``, ``\\.``)."""
        t = self.t
        if e == "x":
            if t.startswith("{", self.i):
                end = t.find("}", self.i)
                digits = t[self.i + 1:end] if end > 0 else ""
                if not digits or len(digits) > 8 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                    raise self.fail("malformed \\x{...}", at)
                self.i = end + 1
            else:
                m = re.compile(r"[0-9a-fA-F]{1,2}").match(t, self.i)
                if m is None:
                    raise self.fail("\\x without hex digits", at)
                digits, self.i = m.group(0), m.end()
            cp = int(digits, 16)
            if cp > 0x10FFFF:
                raise self.fail("code point beyond Unicode", at)
            return cp
        if e == "u":
            m = re.compile(r"[0-9a-fA-F]{4}").match(t, self.i)
            if m is None:
                raise self.fail("\\u needs four hex digits", at)
            self.i = m.end()
            return int(m.group(0), 16)
        if e == "0":
            m = re.compile(r"[0-7]{0,2}").match(t, self.i)
            assert m is not None
            self.i = m.end()
            return int("0" + m.group(0), 8)
        if e == "c":
            if self.i >= self.n:
                raise self.fail("\\c without a character", at)
            self.i += 1
            return ord(t[self.i - 1]) & 0x1F
        return ord(e)  # an escaped punctuation mark, or an unknown letter: the character itself

    def property(self, e: str) -> str:
        m = re.compile(r"\{(\^?)([A-Za-z0-9_ =&.-]+)\}").match(self.t, self.i)
        if m is None:
            raise self.fail(f"malformed \\{e}{{...}}", self.i - 2)
        self.i = m.end()
        self.needs_regex = True
        negated = (e == "P") != bool(m.group(1))
        return f"\\{'P' if negated else 'p'}{{{m.group(2)}}}"

    # -- bracket expressions --------------------------------------------------------------------
    def read_set(self, i: int, depth: int = 0) -> tuple[_Set, int]:
        """The bracket expression opening at ``i``; nested sets and ``&&`` as Oniguruma reads them."""
        t, n = self.t, self.n
        if depth > 50:
            raise self.fail("character class nested too deeply", i)
        opened = i
        i += 1
        negated = i < n and t[i] == "^"
        if negated:
            i += 1
        cur = _Set()
        operands: list[_Set] = []
        first = True
        while True:
            if i >= n:
                raise self.fail("unterminated character class", opened)
            c = t[i]
            if c == "]" and not first:
                i += 1
                break
            first = False
            if c == "[":
                m = _POSIX.match(t, i)
                if m is not None:
                    self.posix(cur, m.group(2), bool(m.group(1)), i)
                    i = m.end()
                    continue
                sub, i = self.read_set(i, depth + 1)
                if sub.negated:
                    cur.parts.append(sub.emit())
                else:  # a union: its members are ours
                    cur.members += sub.members
                    cur.parts += sub.parts
                    cur.underscore |= sub.underscore
                    cur.alnum |= sub.alnum
                    cur.alpha |= sub.alpha
                continue
            if t.startswith("&&", i):
                operands.append(cur)
                cur = _Set()
                i += 2
                continue
            kind, value, i = self.set_atom(i)
            if kind == "char" and i + 1 < n and t[i] == "-" and t[i + 1] != "]":
                kind2, value2, j = self.set_atom(i + 1)
                if kind2 == "char":
                    lo, hi = int(value), int(value2)
                    if hi < lo:
                        raise self.fail("empty range in character class", i)
                    cur.members.append(_class_char(lo) + "-" + _class_char(hi))
                    cur.underscore |= lo <= 0x5F <= hi
                    i = j
                    continue
            self.add_set_atom(cur, kind, value)
        if operands:
            operands.append(cur)
            inter = "(?:" + "".join(f"(?={o.positive()})" for o in operands[:-1]) + operands[-1].positive() + ")"
            return _Set(negated=negated, parts=[inter]), i
        cur.negated = negated
        return cur, i

    def posix(self, s: _Set, name: str, negated: bool, at: int) -> None:
        if name == "alnum" and not negated:
            s.alnum = True
        elif name == "alpha" and not negated:
            s.alpha = True
        elif name in ("alnum", "alpha"):
            s.parts.append(f"(?:(?!{_ALNUM if name == 'alnum' else _ALPHA})(?s:.))")
        elif negated and name in _POSIX_NEG_RE:
            s.members.append(_POSIX_NEG_RE[name])
        elif name in _POSIX_RE:
            if negated:
                s.parts.append(f"[^{_POSIX_RE[name]}]")
            else:
                s.members.append(_POSIX_RE[name])
                s.underscore = s.underscore or name == "word"
        elif name in _POSIX_REGEX:
            self.needs_regex = True
            s.members.append(f"[:{'^' if negated else ''}{name}:]")
        else:
            raise self.fail(f"unknown POSIX class [:{name}:]", at)

    def set_atom(self, i: int) -> tuple[str, str, int]:
        """("char", code point) | ("member", set syntax) | ("part", matcher) at i, and where it ends."""
        t = self.t
        c = t[i]
        if c != "\\":
            return "char", str(ord(c)), i + 1
        if i + 1 >= self.n:
            raise self.fail("a lone backslash at the end", i)
        e = t[i + 1]
        if e == "h":
            return "member", "0-9a-fA-F", i + 2
        if e == "H":
            return "part", "[^0-9a-fA-F]", i + 2
        if e in "dDwWsS":
            return "member", "\\" + e, i + 2
        if e in "pP":
            self.i = i + 2
            prop = self.property(e)
            return "member", prop, self.i
        if e == "b":
            return "char", "8", i + 2
        named = {"n": 10, "t": 9, "r": 13, "f": 12, "v": 11, "a": 7, "e": 27}
        if e in named:
            return "char", str(named[e]), i + 2
        save = self.i
        self.i = i + 2
        cp = self.code_point(e, i) if e in "xu0c" else (int(e, 8) if e in "1234567" else ord(e))
        end, self.i = self.i, save
        return "char", str(cp), end

    @staticmethod
    def add_set_atom(s: _Set, kind: str, value: str) -> None:
        if kind == "char":
            s.members.append(_class_char(int(value)))
            s.underscore = s.underscore or value == "95"
        elif kind == "member":
            s.members.append(value)
            s.underscore = s.underscore or value == "\\w"
        else:
            s.parts.append(value)


def _interval(t: str, i: int) -> re.Match[str] | None:
    """``{n}``, ``{n,}``, ``{n,m}``, ``{,m}`` at i; anything else is a literal brace, as in Oniguruma."""
    m = _INTERVAL.match(t, i)
    if m is None or not (m.group(1) or m.group(3)):
        return None
    return m
