"""Helpers shared by subcommands: consoles, config loading with readable errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import click

if TYPE_CHECKING:
    from rich.console import Console

    # imported where used: the settings' models take a third of a second to build,
    # which ``telemetry parse`` on a short file and every query command would pay for nothing
    from telemetry.config import ConfigError, Settings
from telemetry.timeutil import parse_duration, parse_timestamp, utcnow

F = TypeVar("F", bound=Callable[..., Any])


class _Lazy:
    """A rich Console made at its first use: importing rich cost every command 20 ms at start, which
    ``telemetry parse`` (its output is orjson's, its stderr mostly silent) paid for nothing."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


out = cast("Console", _Lazy(soft_wrap=True))
err = cast("Console", _Lazy(stderr=True, soft_wrap=True))


def console_of(c: Any) -> Console:
    """The Console behind ``out`` or ``err``, for rich's own objects that take one (a progress bar)."""
    return c.console if isinstance(c, _Lazy) else cast("Console", c)

config_option = click.option(
    "-c", "--config", "config_path", type=click.Path(dir_okay=False), envvar="TELEMETRY_CONFIG",
    help="YAML configuration file (env: TELEMETRY_CONFIG).",
)


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(code)


def report_config_error(exc: ConfigError) -> None:
    from rich.markup import escape

    from telemetry.config.loader import shown

    err.print(f"[bold red]invalid configuration[/] in {exc.source}:", highlight=False)
    for p in exc.problems:
        where = p.path or "(top level)"
        if p.variable:  # the value came from the environment: the variable is what to fix
            where = f"{p.variable} ({where})"
        err.print(f"  [yellow]{escape(where)}[/]: {escape(p.message)}"
                  + (f" [dim](got {escape(shown(p.value))})[/]" if p.has_value else ""), highlight=False, markup=True)


def load_or_exit(path: str | None) -> Settings:
    """The settings, or a clear message naming each bad field and exit code 2."""
    from telemetry.config import ConfigError, load_config

    if path is not None and not os.path.exists(path):
        fail(f"configuration file not found: {path}")
    try:
        return load_config(path)
    except ConfigError as exc:
        report_config_error(exc)
        sys.exit(2)


#: ``-q`` is ``--query`` in every query command (the daemon commands' ``--quiet`` has no short form).
query_option = click.option("-q", "--query", default=None, help="field[op]value;... (op: = != < <= > >=).")


def limit_option(default: int | None, text: str, most: int | None = None) -> Callable[[F], F]:
    """``-l/--limit``: one short form for limits in every command."""
    return click.option("-l", "--limit", type=click.IntRange(1, most), default=default, show_default=default is not None,
                        help=text)


def since_time(text: str | None, option: str = "--since") -> str | None:
    """What people type for a time (``15m``, ``2h``, ``7d``, ``yesterday``, ``today``, ``now``, an ISO time)
    as an ISO time the API takes; a clear error for anything else."""
    if text is None or not text.strip():
        return None
    value = text.strip().lower()
    now = utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    named = {"now": now, "today": midnight, "yesterday": midnight - timedelta(days=1)}
    if value in named:
        return named[value].isoformat()
    try:
        return (now - timedelta(seconds=parse_duration(value.removeprefix("-").removeprefix("now-")))).isoformat()
    except ValueError:
        pass
    try:
        return parse_timestamp(text.strip()).isoformat()
    except ValueError:
        fail(f"{option} {text!r}: expected 15m, 2h, 7d, yesterday, today or an ISO time such as 2024-05-01T10:00")


OPS = (("<=", "le"), (">=", "ge"), ("!=", "ne"), ("<", "lt"), (">", "gt"), ("=", "eq"))


def query_params(query: str | None) -> list[tuple[str, str]]:
    """``'resource_id=abc;timestamp>=2024-01-01T00:00:00'`` -> q.field/q.op/q.value pairs, as ceilometer -q."""
    params: list[tuple[str, str]] = []
    for part in (query or "").split(";"):
        part = part.strip()
        if not part:
            continue
        for sym, op in OPS:
            field, sep, value = part.partition(sym)
            if sep and field.strip():
                params += [("q.field", field.strip()), ("q.op", op), ("q.value", value.strip())]
                break
        else:
            fail(f"bad query term {part!r}: expected field<op>value with op one of = != < <= > >=")
    return params
