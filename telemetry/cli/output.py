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


#: A kept column is never narrower than its longest value up to this (a UUID, most meter names); longer values fold.
KEEP_MAX = 40
#: A first-line column (messages) needs at least this much (or its longest value, if shorter); others their header.
TEXT_MIN = 10


def _text(c: Column, v: Any) -> Text:
    """A table cell; figures show 6 significant digits there (csv, value and json keep every digit)."""
    if isinstance(v, float):
        v = f"{v:.6g}"
    text = v if isinstance(v, Text) else Text(_cell(v))
    if c.first_line and "\n" in text.plain:
        text = text.split("\n")[0]
    return text


def _fit(cols: list[Column], cells: list[list[Text]], width: int) -> tuple[list[int], list[int]]:
    """Which columns fit ``width`` (indexes) and the width each may take; the rightmost text columns go first."""
    longest = [max([len(c.name)] + [max((len(line) for line in r[i].plain.split("\n")), default=0) for r in cells])
               for i, c in enumerate(cols)]
    # rich never narrows a column below its longest word, so neither may the plan
    words = [max(len(w) for text in [c.name, *(r[i].plain for r in cells)] for w in (text.split() or [""]))
             for i, c in enumerate(cols)]
    mins = [min(n, KEEP_MAX) if c.keep else min(n, max(TEXT_MIN, len(c.name))) if c.first_line else min(w, KEEP_MAX)
            for c, n, w in zip(cols, longest, words)]
    shown = list(range(len(cols)))
    while len(shown) > 1 and sum(mins[i] + 3 for i in shown) + 1 > width:
        droppable = [i for i in shown if not cols[i].keep] or shown[1:]
        shown.remove(droppable[-1])
    # A first-line column gets what the others leave (they take their longest value, kept ones up to KEEP_MAX).
    others = sum(min(longest[i], KEEP_MAX) + 3 for i in shown if not cols[i].first_line) + 1
    lines = [i for i in shown if cols[i].first_line]
    for i in lines:
        mins[i] = max(mins[i], (width - others) // len(lines) - 3)
    return shown, mins


def _table(cols: list[Column], rows: list[list[Any]], title: str | None, styles: list[str] | None,
           width: int | None) -> tuple[Table, list[str]]:
    """The table, and the names of the columns left out to fit ``width`` (None: no limit)."""
    cells = [[_text(c, v) for c, v in zip(cols, row)] for row in rows]
    shown, mins = _fit(cols, cells, width) if width else (list(range(len(cols))), [0] * len(cols))
    table = Table(title=title, header_style="bold", show_lines=False, title_justify="left")
    for i in shown:
        c = cols[i]
        if c.first_line and width:  # one line each, cut with an ellipsis to the width left for it
            for row in cells:
                row[i].truncate(mins[i], overflow="ellipsis")
            table.add_column(c.name, no_wrap=True, min_width=mins[i])
        else:
            table.add_column(c.name, overflow="fold", min_width=mins[i] or None, no_wrap=c.first_line)
    for n, row in enumerate(cells):
        style = styles[n] if styles else ""
        table.add_row(*(row[i] for i in shown), style=style or None)
    return table, [c.name for i, c in enumerate(cols) if i not in shown]


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
        console = _console()
        table, hidden = _table(cols, cells, title, styles, console.width if sys.stdout.isatty() else None)
        console.print(table)
        if hidden:
            import textwrap

            note = f"(hidden to fit: {', '.join(hidden)}; see -c or -f json)"
            click.echo("\n".join(textwrap.wrap(note, console.width)), err=True)
