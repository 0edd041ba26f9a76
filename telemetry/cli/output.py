"""How query commands print: the OpenStack CLI's ``-f table|json|yaml|csv|value`` and ``-c COLUMN``.

cliff's formatters (which the openstack, aodh and gnocchi clients use) are
the reference: ``value`` prints the cells separated by spaces, one row a line,
for shell loops; ``csv`` quotes text cells; ``json`` and ``yaml`` print the
API's own objects, whole, so nothing a script needs is lost to the table.

A table on a terminal fits its width: the columns marked ``keep`` (ids, names,
times) are never broken, the others fold or, for ``first_line`` columns, show
their first line only. A table written to a pipe or a file never wraps at
all, so ``meter-list | grep`` finds every row on one line.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("table", "json", "yaml", "csv", "value")


@dataclass(frozen=True)
class Column:
    name: str
    #: Never broken over lines on a terminal (ids, names, times); the text columns give way.
    keep: bool = False
    #: Only the first line of the cell in a table (messages, tracebacks).
    first_line: bool = False


def output_options(func: F) -> F:
    """``-f/--format`` and ``-c/--column``, as every OpenStack client has them."""
    func = click.option("-c", "--column", "columns", multiple=True, metavar="COLUMN",
                        help="Only this column (repeatable); names as in the table header.")(func)
    return click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                        help="Output format: table, json and yaml (the API's objects), csv, value (cells only).")(func)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _select(columns: Sequence[Column | str], rows: list[Sequence[Any]], wanted: Sequence[str]
            ) -> tuple[list[Column], list[list[Any]]]:
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    if not wanted:
        return cols, [list(r) for r in rows]
    by_name = {c.name.lower(): i for i, c in enumerate(cols)}
    picked = []
    for w in wanted:
        if w.lower() not in by_name:
            raise click.UsageError(f"no column {w!r}; the columns are: {', '.join(c.name for c in cols)}")
        picked.append(by_name[w.lower()])
    return [cols[i] for i in picked], [[r[i] for i in picked] for r in rows]


def _console() -> Console:
    if sys.stdout.isatty():
        return Console(soft_wrap=False)
    # Piped: as wide as the widest row needs (rich measures it), never wrapped.
    return Console(width=1 << 16, soft_wrap=True, force_terminal=False, color_system=None)


def _table(cols: list[Column], rows: list[list[Any]], title: str | None, styles: list[str] | None) -> Table:
    table = Table(title=title, header_style="bold", show_lines=False, title_justify="left")
    for c in cols:
        if c.keep:
            table.add_column(c.name, no_wrap=True, overflow="fold")
        elif c.first_line:
            table.add_column(c.name, no_wrap=True, overflow="ellipsis", ratio=1)
        else:
            table.add_column(c.name, overflow="fold")
    for i, row in enumerate(rows):
        style = styles[i] if styles else ""
        cells = []
        for c, v in zip(cols, row):
            text = v if isinstance(v, Text) else Text(_cell(v))
            if c.first_line:
                text = text.split("\n")[0] if "\n" in text.plain else text
            cells.append(text)
        table.add_row(*cells, style=style or None)
    return table


def emit(columns: Sequence[Column | str], rows: Iterable[Sequence[Any]], fmt: str, wanted: Sequence[str] = (),
         objects: Any = None, title: str | None = None, styles: list[str] | None = None) -> None:
    """Print ``rows`` under ``columns`` in ``fmt``; ``objects`` (the API's JSON) for json and yaml."""
    rows = list(rows)
    cols, cells = _select(columns, rows, wanted)
    if fmt in ("json", "yaml"):
        data = objects if objects is not None and not wanted else [
            {c.name: (v.plain if isinstance(v, Text) else v) for c, v in zip(cols, r)} for r in cells]
        if fmt == "json":
            click.echo(json.dumps(data, indent=2, default=str))
        else:
            import yaml

            click.echo(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False,
                                      allow_unicode=True).rstrip())
        return
    plain = [[v.plain if isinstance(v, Text) else v for v in r] for r in cells]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        writer.writerow([c.name for c in cols])
        writer.writerows([[v if isinstance(v, (int, float)) and not isinstance(v, bool) else _cell(v) for v in r]
                          for r in plain])
        click.echo(buf.getvalue(), nl=False)
    elif fmt == "value":
        for r in plain:
            click.echo(" ".join(_cell(v) for v in r))
    else:
        _console().print(_table(cols, cells, title, styles))
