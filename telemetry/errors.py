"""How a pydantic validation error is told to a person: ``path: message``.

Config files, API bodies, datagrams and pipeline files are all validated by
pydantic, and an operator reads the result in a terminal, an HTTP 400 or a
log line. Written once so every door names the field the same way
(``sinks[0].transformers[1].parameters.scale``) and drops pydantic's
boilerplate (``Value error, `` prefixes, documentation URLs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

__all__ = ["describe", "format_loc", "problems"]


def format_loc(loc: Iterable[Any]) -> str:
    """``("sinks", 0, "name")`` -> ``sinks[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _message(err: Any) -> str:
    return str(err["msg"]).removeprefix("Value error, ")


def problems(exc: ValidationError | Any, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(path, message) per error; ``skip`` drops location parts such as FastAPI's ``body``.

    ``exc`` is pydantic's ValidationError or anything with the same ``errors()`` (FastAPI's
    RequestValidationError).
    """
    errors = exc.errors(include_url=False) if isinstance(exc, ValidationError) else exc.errors()
    return [(format_loc(p for p in e["loc"] if p not in skip), _message(e)) for e in errors]


def describe(exc: ValidationError | Any, root: str = "", prefix: str = "", first: bool = False,
             skip: tuple[str, ...] = ()) -> str:
    """Every error (or the ``first``) as ``prefix + path: message``, joined by ``; ``.

    ``root`` names the whole object when an error has no path (``alarm: ...``).
    """
    found = problems(exc, skip)
    if first:
        found = found[:1]
    return "; ".join(f"{prefix}{path or root or '(top level)'}: {msg}" for path, msg in found)
