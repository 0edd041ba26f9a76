"""``telemetry meter-list``, ``sample-list`` and ``statistics``: the ceilometer client's commands.

They talk to the Ceilometer v2 API of a running daemon and print the same
columns the ceilometer CLI printed, so operators' habits and scripts carry over.
"""

from __future__ import annotations

from typing import Any

import click

from telemetry.cli.client import ApiClient, api_options
from telemetry.cli.common import limit_option, query_option, query_params
from telemetry.cli.output import Column, emit, output_options

STAT_COLUMNS = ["Period", "Period Start", "Period End", "Max", "Min", "Avg", "Sum", "Count", "Duration",
                "Duration Start", "Duration End"]
METER_COLUMNS = [Column("Name", keep=True), Column("Type"), Column("Unit"), Column("Resource ID", keep=True),
                 Column("User ID"), Column("Project ID")]
SAMPLE_COLUMNS = [Column("Resource ID", keep=True), Column("Name", keep=True), Column("Type"), Column("Volume"),
                  Column("Unit"), Column("Timestamp", keep=True)]


@click.command("meter-list")
@query_option
@output_options
@api_options
def meter_list(query: str | None, fmt: str, columns: tuple[str, ...], url: str, token: str | None) -> None:
    """List meters (one row per meter and resource)."""
    data = ApiClient(url, token).request("GET", "/v2/meters", params=query_params(query))
    emit(METER_COLUMNS, [(m["name"], m["type"], m["unit"], m["resource_id"], m["user_id"], m["project_id"])
                         for m in data], fmt, columns, data)


@click.command("sample-list")
@click.option("-m", "--meter", required=True, help="Name of the meter.")
@query_option
@limit_option(None, "Most recent N samples.")
@output_options
@api_options
def sample_list(meter: str, query: str | None, limit: int | None, fmt: str, columns: tuple[str, ...], url: str,
                token: str | None) -> None:
    """List the samples of a meter, newest first."""
    params = query_params(query) + ([("limit", str(limit))] if limit else [])
    data = ApiClient(url, token).request("GET", f"/v2/meters/{meter}", params=params)
    emit(SAMPLE_COLUMNS, [(s["resource_id"], s["counter_name"], s["counter_type"], s["counter_volume"],
                           s["counter_unit"], s["timestamp"]) for s in data], fmt, columns, data)


@click.command("statistics")
@click.option("-m", "--meter", required=True, help="Name of the meter.")
@click.option("-p", "--period", type=click.IntRange(min=1), default=None, help="Period length in seconds.")
@query_option
@click.option("-g", "--groupby", multiple=True, help="Field to group by (resource_id, project_id, ...).")
@click.option("-a", "--aggregate", "aggregates", multiple=True,
              help="Aggregate function(s): avg sum min max count stddev.")
@output_options
@api_options
def statistics(meter: str, period: int | None, query: str | None, groupby: tuple[str, ...],
               aggregates: tuple[str, ...], fmt: str, columns: tuple[str, ...], url: str, token: str | None) -> None:
    """Statistics of a meter, with Ceilometer's columns."""
    params = query_params(query) + ([("period", str(period))] if period else [])
    params += [("groupby", g) for g in groupby] + [("aggregate.func", a) for a in aggregates]
    data = ApiClient(url, token).request("GET", f"/v2/meters/{meter}/statistics", params=params)
    names = STAT_COLUMNS[:]
    if aggregates:
        # As the ceilometer client: the requested aggregates replace Max..Count.
        names = STAT_COLUMNS[:3] + [a.capitalize() for a in aggregates] + STAT_COLUMNS[8:]
    if groupby:
        names.insert(0, "Group By")
    # Times are kept whole; at 80 columns the figures fold rather than the period bounds.
    cols = [Column(n, keep=n in ("Period Start", "Period End")) for n in names]
    rows = [_row(s, aggregates, bool(groupby)) for s in data]
    title = None
    if fmt == "table":  # readable at 80 columns: one date in the title, times of day in the cells
        rows, day = _times_of_day(rows, [i for i, n in enumerate(names) if n in TIME_COLUMNS])
        title = f"{meter}, {day} (UTC)" if day else None
    emit(cols, rows, fmt, columns, data, title=title)


def _row(s: dict[str, Any], aggregates: tuple[str, ...], grouped: bool) -> list[Any]:
    agg = s.get("aggregate") or {}
    values = [agg.get(a) for a in aggregates] if aggregates else [s["max"], s["min"], s["avg"], s["sum"], s["count"]]
    row = [s["period"], s["period_start"], s["period_end"], *values, s["duration"], s["duration_start"],
           s["duration_end"]]
    return ([s.get("groupby")] if grouped else []) + row


TIME_COLUMNS = ("Period Start", "Period End", "Duration Start", "Duration End")


def _times_of_day(rows: list[list[Any]], where: list[int]) -> tuple[list[list[Any]], str | None]:
    """Rows with ``HH:MM:SS`` in the time columns when every time falls on one day (that day), else as they were."""
    days = {str(r[i])[:10] for r in rows for i in where if r[i]}
    if len(days) != 1:
        return rows, None
    out = [[(str(v)[11:19] if i in where and v else v) for i, v in enumerate(r)] for r in rows]
    return out, days.pop()


def _register(group: click.Group) -> None:
    for cmd in (meter_list, sample_list, statistics):
        group.add_command(cmd)


from telemetry.cli import main as _main  # noqa: E402

_register(_main)
