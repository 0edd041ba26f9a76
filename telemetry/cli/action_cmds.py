"""action-log, dead-letters, silence-create, silence-list, silence-delete: through the HTTP API."""

from __future__ import annotations

from datetime import timedelta

import click

from telemetry.cli import main
from telemetry.cli.client import ApiClient, api_options
from telemetry.cli.common import fail, limit_option, out
from telemetry.cli.output import Column, emit, output_options
from telemetry.timeutil import parse_duration, parse_timestamp, utcnow


@main.command("action-log")
@api_options
@output_options
@click.option("--status", default=None, help="Only rows whose status starts with this (delivered, retry, dead, "
                                             "suppressed, blocked, ...).")
@click.option("--alarm", "alarm_id", default=None, help="Only this alarm id.")
@limit_option(50, "Newest rows shown.")
def action_log(url: str, token: str | None, fmt: str, columns: tuple[str, ...], status: str | None,
               alarm_id: str | None, limit: int) -> None:
    """The delivery log: every attempt and every decision not to send (targets redacted)."""
    rows = ApiClient(url, token).get("/v1/actions/deliveries", limit=limit, status=status, alarm_id=alarm_id)
    emit([Column("Time", keep=True), Column("Alarm", keep=True), Column("State"), Column("Notifier"), Column("Target"),
          Column("Status"), Column("HTTP"), Column("Attempts"), Column("Error")],
         ([r["time"], r["alarm_name"], r["state"], r["notifier"], r["target"], r["status"], r["http_status"],
           r["attempts"], r["error"]] for r in rows), fmt, columns, rows)


@main.command("dead-letters")
@api_options
@output_options
@click.option("--retry", "retry_id", default=None, help="Queue this dead letter again.")
def dead_letters(url: str, token: str | None, fmt: str, columns: tuple[str, ...], retry_id: str | None) -> None:
    """Actions given up after their last attempt; --retry ID sends one again."""
    api = ApiClient(url, token)
    if retry_id:
        api.request("POST", f"/v1/actions/dead-letters/{retry_id}/retry")
        out.print(f"{retry_id} queued again")
        return
    rows = api.get("/v1/actions/dead-letters")
    emit([Column("ID", keep=True), Column("Alarm", keep=True), Column("Notifier"), Column("Target"),
          Column("Attempts"), Column("Last status"), Column("Last error")],
         ([r["id"], r["transition"].get("alarm_name"), r["notifier"], r["target"], r["attempts"],
           r["last_status"], r["last_error"]] for r in rows), fmt, columns, rows)


def _silence_rows(rows: list[dict]) -> list[list]:
    return [[s["id"], ", ".join(f"{m['name']}{m['op']}{m['value']}" for m in s["matchers"]), s["starts_at"],
             s["ends_at"], s["comment"], s["created_by"]] for s in rows]


SILENCE_COLUMNS = [Column("ID", keep=True), Column("Matchers"), Column("Starts", keep=True), Column("Ends", keep=True),
                   Column("Comment"), Column("Created by")]


@main.command("silence-create")
@api_options
@output_options
@click.option("-m", "--match", "matchers", multiple=True, required=True,
              help="name=value, name!=value, name=~regex (alarm_id, alarm_name, host, role or any label); repeatable.")
@click.option("--start", default=None, help="Start time (ISO 8601); default now.")
@click.option("--end", default=None, help="End time (ISO 8601).")
@click.option("--duration", default=None, help="Length instead of --end: 30m, 2h, 1d.")
@click.option("--comment", default="", help="Why (maintenance ticket, ...).")
@click.option("--author", default="", help="Who.")
def silence_create(url: str, token: str | None, fmt: str, columns: tuple[str, ...], matchers: tuple[str, ...], start: str | None,
                   end: str | None, duration: str | None, comment: str, author: str) -> None:
    """Mute actions of matching alarms (and alarms depending on them) for a maintenance window."""
    try:
        starts = parse_timestamp(start) if start else utcnow()
        if end and duration:
            fail("give --end or --duration, not both")
        ends = parse_timestamp(end) if end else starts + timedelta(seconds=parse_duration(duration or "1h"))
    except ValueError as exc:
        fail(str(exc))
    body = {"matchers": list(matchers), "starts_at": starts.isoformat(), "ends_at": ends.isoformat(),
            "comment": comment, "created_by": author}
    s = ApiClient(url, token).request("POST", "/v1/silences", json=body)
    emit(SILENCE_COLUMNS, _silence_rows([s]), fmt, columns, s)


@main.command("silence-list")
@api_options
@output_options
@click.option("--active", is_flag=True, help="Only silences in force now.")
def silence_list(url: str, token: str | None, fmt: str, columns: tuple[str, ...], active: bool) -> None:
    """Silences and maintenance windows."""
    rows = ApiClient(url, token).get("/v1/silences", active=str(active).lower())
    emit(SILENCE_COLUMNS, _silence_rows(rows), fmt, columns, rows)


@main.command("silence-delete")
@api_options
@click.argument("silence_id")
def silence_delete(url: str, token: str | None, silence_id: str) -> None:
    """End a silence now."""
    ApiClient(url, token).request("DELETE", f"/v1/silences/{silence_id}")
    out.print(f"silence {silence_id} deleted")
