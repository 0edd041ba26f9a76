"""``telemetry search``: Kibana-style queries over stored events, from the terminal.

It goes through the HTTP API like every query command, so the same line works
against the local all-in-one and a remote server.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from telemetry.cli import main
from telemetry.cli.client import ApiClient, api_options, format_option
from telemetry.cli.common import fail, out

#: Colours by level, as operators know them from coloured log viewers.
LEVEL_STYLES = {
    "CRITICAL": "bold white on red", "FATAL": "bold white on red", "ERROR": "bold red", "TRACE": "red",
    "WARNING": "yellow", "WARN": "yellow", "AUDIT": "cyan", "INFO": "green", "DEBUG": "dim",
}
REQUEST_LIMIT = 10_000
#: Seconds of lateness --follow tolerates (a line stored after newer ones).
FOLLOW_WINDOW = 120


def _when(ev: dict[str, Any]) -> str:
    return str(ev.get("@timestamp", "")).replace("T", " ").rstrip("Z")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _table(events: list[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title, header_style="bold", show_lines=False)
    for col in ("Time", "Host", "Component", "Level", "Message"):
        table.add_column(col, overflow="fold", no_wrap=col in ("Time", "Level"))
    for ev in events:
        level = str(ev.get("level") or "")
        style = LEVEL_STYLES.get(level.upper(), "")
        message = ev.get("message") or ""
        if ev.get("type") == "notification" and ev.get("event_type") and message != ev["event_type"]:
            message = f"{ev['event_type']}: {message}"
        table.add_row(_when(ev), ev.get("host") or "", ev.get("component") or "", Text(level, style=style),
                      Text(str(message), style=style if level.upper() in ("ERROR", "CRITICAL", "FATAL") else ""))
    return table


def _emit(events: list[dict[str, Any]], fmt: str, title: str | None = None) -> None:
    if fmt == "json":
        for ev in events:  # one object a line: easy to pipe into jq and to tail with --follow
            click.echo(json.dumps(ev, default=str))
    elif events:
        out.print(_table(events, title))


#: Where each traced id can be: log captures, notification payload fields, and (free text) the message.
TRACE_FIELDS = {
    "request": ("request_id", "global_request_id", "_context_global_request_id"),
    "instance": ("instance_id", "instance_uuid", "resource_id", "nova_object.data.uuid"),
    "volume": ("volume_id", "resource_id", "cinder_object.data.id"),
}


def trace_query(kind: str, value: str) -> str:
    """One resource's history: any field that names it, or (instances, volumes) its id in the message."""
    terms = [f"{f}:{_quote(value)}" for f in TRACE_FIELDS[kind]]
    if kind != "request":
        terms.append(_quote(value))  # "device_id=ID", "Attaching volume ID": lines that name it in passing
    return " OR ".join(terms)


@main.command("search")
@click.argument("query", required=False, default="")
@click.option("--since", default=None, help="Only events newer than this: 15m, 1h, 7d or an ISO time.")
@click.option("--until", default=None, help="Only events older than this (same forms as --since).")
@click.option("--limit", "-n", type=click.IntRange(1, REQUEST_LIMIT), default=50, show_default=True,
              help="At most this many events (newest first).")
@click.option("--request-id", default=None, metavar="REQ",
              help="Follow one request (req-..., its own or the global one) across services and hosts, oldest first.")
@click.option("--instance", default=None, metavar="ID",
              help="One instance's history across services and notifications, oldest first.")
@click.option("--volume", default=None, metavar="ID",
              help="One volume's history across services and notifications, oldest first.")
@click.option("--follow", is_flag=True, help="Keep printing new matches as they arrive (Ctrl-C stops).")
@click.option("--interval", default=1.0, type=float, show_default=True, hidden=True,
              help="Seconds between polls with --follow.")
@format_option
@api_options
def search(query: str, since: str | None, until: str | None, limit: int, request_id: str | None,
           instance: str | None, volume: str | None, follow: bool, interval: float, fmt: str, url: str,
           token: str | None) -> None:
    """Search stored events: QUERY as in Kibana, e.g. 'component:nova AND level:ERROR'.

    \b
    field:value  "a phrase"  AND OR NOT ( )  component:nova*  status:[500 TO 599]
    @timestamp:[now-1h TO now]  free words search the message text.
    """
    client = ApiClient(url, token)
    start = since  # the API reads 1h, -1h, now-1h and ISO times alike
    traced = [(k, v) for k, v in (("request", request_id), ("instance", instance), ("volume", volume)) if v]
    if len(traced) > 1:
        fail("give one of --request-id, --instance, --volume")
    if traced:
        kind, value = traced[0]
        q = f"({trace_query(kind, value)})" + (f" AND ({query})" if query else "")
        events = client.get("/v1/events", q=q, start=start, end=until, limit=REQUEST_LIMIT, order="asc")
        if not events:
            fail(f"no events for {kind} {value}", 1)
        hosts = sorted({e.get("host") or "?" for e in events})
        comps = sorted({e.get("component") or "?" for e in events})
        title = f"{value}: {len(events)} events, {', '.join(comps)} on {', '.join(hosts)}"
        _emit(events, fmt, title)
        return
    events = client.get("/v1/events", q=query or None, start=start, end=until, limit=limit)
    events.reverse()  # the newest last, where the eye (and --follow) continue
    _emit(events, fmt)
    if follow:
        _follow(client, query, events, fmt, interval)


def _follow(client: ApiClient, query: str, shown: list[dict[str, Any]], fmt: str, interval: float) -> None:
    """Poll a trailing window and print matches not printed yet.

    The window (server-relative, so clocks need not agree) lets a line that
    reached the store a little late, with an older timestamp, still show up;
    ids already printed are remembered in a bounded set.
    """
    floor = shown[0]["@timestamp"] if shown else ""
    seen: dict[str, None] = dict.fromkeys(e["id"] for e in shown)
    try:
        while True:
            time.sleep(interval)
            batch = client.get("/v1/events", q=query or None, start=f"-{FOLLOW_WINDOW}s",
                               limit=REQUEST_LIMIT, order="asc")
            new = [e for e in batch if e["id"] not in seen and e["@timestamp"] >= floor]
            if not new:
                continue
            _emit(new, fmt)
            seen.update(dict.fromkeys(e["id"] for e in new))
            while len(seen) > 100_000:
                seen.pop(next(iter(seen)))
    except KeyboardInterrupt:
        pass
