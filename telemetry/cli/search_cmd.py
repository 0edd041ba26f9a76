"""``telemetry search``: Kibana-style queries over stored events, from the terminal.

It goes through the HTTP API like every query command, so the same line works
against the local all-in-one and a remote server.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.text import Text

from telemetry.cli import main
from telemetry.cli.client import ApiClient, api_options
from telemetry.cli.common import err, fail, limit_option, since_time
from telemetry.cli.output import Column, emit, output_options
from telemetry.events.trace import trace_query
from telemetry.recent import RecentIds

#: Colours by level, as operators know them from coloured log viewers.
LEVEL_STYLES = {
    "CRITICAL": "bold white on red", "FATAL": "bold white on red", "ERROR": "bold red", "TRACE": "red",
    "WARNING": "yellow", "WARN": "yellow", "AUDIT": "cyan", "INFO": "green", "DEBUG": "dim",
}
REQUEST_LIMIT = 10_000
#: Seconds of lateness --follow tolerates (a line stored after newer ones).
FOLLOW_WINDOW = 120


def _when(ev: dict[str, Any]) -> str:
    """``2024-05-01 10:00:00.123``: milliseconds are what log lines carry; the table needs no more."""
    text = str(ev.get("@timestamp", "")).replace("T", " ").rstrip("Z")
    head, dot, frac = text.partition(".")
    return head + (dot + frac[:3] if dot else "")


COLUMNS = [Column("Time", keep=True), Column("Host", keep=True), Column("Component", keep=True),
           Column("Level", keep=True), Column("Message", first_line=True)]


def _rows(events: list[dict[str, Any]]) -> tuple[list[list[Any]], list[str]]:
    """Table rows (the message's first line shows in a table; -f json has the whole event) and row styles."""
    rows, styles = [], []
    for ev in events:
        level = str(ev.get("level") or "")
        style = LEVEL_STYLES.get(level.upper(), "")
        message = str(ev.get("message") or "").strip()
        if ev.get("type") == "notification" and ev.get("event_type") and message != ev["event_type"]:
            message = f"{ev['event_type']}: {message}"
        rows.append([_when(ev), ev.get("host") or "", ev.get("component") or "", Text(level, style=style),
                     Text(message, style=style if level.upper() in ("ERROR", "CRITICAL", "FATAL") else "")])
        styles.append("")
    return rows, styles


def _emit(events: list[dict[str, Any]], fmt: str, columns: tuple[str, ...] = (), title: str | None = None) -> None:
    if fmt == "json" and not columns:
        for ev in events:  # one object a line: easy to pipe into jq and to tail with --follow
            click.echo(json.dumps(ev, default=str))
        return
    rows, styles = _rows(events)
    emit(COLUMNS, rows, fmt, columns, events, title=title, styles=styles)


def _nothing_found(client: ApiClient, fmt: str) -> None:
    """``0 events`` on stderr (stdout stays empty for pipes), and why when old lines were dropped."""
    if fmt != "table":
        return
    err.print("0 events", highlight=False)
    try:
        health = client.get("/healthz")
    except SystemExit:  # the hint is a courtesy: no health, no hint
        return
    for c in (health or {}).get("components", {}).values():
        if c.get("expired_on_arrival"):
            by = c.get("expired_on_arrival_by_source") or {}
            where = ", ".join(f"{n} from {src}" for src, n in list(by.items())[:5])
            err.print(f"hint: {c['expired_on_arrival']} events were older than the retention when they arrived and "
                      f"were not stored ({where}); raise store.ttl.events to keep them", highlight=False)


@main.command("search")
@click.argument("query", required=False, default="")
@click.option("--since", default=None, help="Only events newer than this: 15m, 2h, 7d, yesterday, today or an ISO time.")
@click.option("--until", default=None, help="Only events older than this (same forms as --since).")
@limit_option(50, "At most this many events (newest first).", REQUEST_LIMIT)
@click.option("--request-id", default=None, metavar="REQ",
              help="Follow one request (req-..., its own or the global one) across services and hosts, oldest first.")
@click.option("--instance", default=None, metavar="ID",
              help="One instance's history across services and notifications, oldest first.")
@click.option("--volume", default=None, metavar="ID",
              help="One volume's history across services and notifications, oldest first.")
@click.option("--follow", is_flag=True, help="Keep printing new matches as they arrive (Ctrl-C stops).")
@click.option("--interval", default=1.0, type=float, show_default=True, hidden=True,
              help="Seconds between polls with --follow.")
@output_options
@api_options
def search(query: str, since: str | None, until: str | None, limit: int, request_id: str | None,
           instance: str | None, volume: str | None, follow: bool, interval: float, fmt: str,
           columns: tuple[str, ...], url: str, token: str | None) -> None:
    """Search stored events: QUERY as in Kibana, e.g. 'component:nova AND level:ERROR'.

    \b
    field:value  "a phrase"  AND OR NOT ( )  component:nova*  status:[500 TO 599]
    @timestamp:[now-1h TO now]  free words search the message text.
    """
    client = ApiClient(url, token)
    start, end = since_time(since), since_time(until, "--until")
    traced = [(k, v) for k, v in (("request", request_id), ("instance", instance), ("volume", volume)) if v]
    if len(traced) > 1:
        fail("give one of --request-id, --instance, --volume")
    if traced:
        kind, value = traced[0]
        q = f"({trace_query(kind, value)})" + (f" AND ({query})" if query else "")
        events = client.get("/v1/events", q=q, start=start, end=end, limit=REQUEST_LIMIT, order="asc")
        if not events:
            _nothing_found(client, fmt)
            fail(f"no events for {kind} {value}", 1)
        hosts = sorted({e.get("host") or "?" for e in events})
        comps = sorted({e.get("component") or "?" for e in events})
        title = f"{value}: {len(events)} events, {', '.join(comps)} on {', '.join(hosts)}"
        _emit(events, fmt, columns, title)
        return
    events = client.get("/v1/events", q=query or None, start=start, end=end, limit=limit)
    events.reverse()  # the newest last, where the eye (and --follow) continue
    if events:
        _emit(events, fmt, columns)
    elif not follow:
        _nothing_found(client, fmt)
    if follow:
        _follow(client, query, events, fmt, columns, interval)


def _follow(client: ApiClient, query: str, shown: list[dict[str, Any]], fmt: str, columns: tuple[str, ...],
            interval: float) -> None:
    """Poll a trailing window and print matches not printed yet.

    The window (server-relative, so clocks need not agree) lets a line that
    reached the store a little late, with an older timestamp, still show up;
    ids already printed are remembered in a bounded set.
    """
    floor = shown[0]["@timestamp"] if shown else ""
    seen = RecentIds(100_000)
    for e in shown:
        seen.fresh(e["id"])
    try:
        while True:
            time.sleep(interval)
            batch = client.get("/v1/events", q=query or None, start=f"-{FOLLOW_WINDOW}s",
                               limit=REQUEST_LIMIT, order="asc")
            new = [e for e in batch if e["@timestamp"] >= floor and seen.fresh(e["id"])]
            if not new:
                continue
            _emit(new, fmt, columns)
    except KeyboardInterrupt:
        pass
