"""action-log, dead-letters, silence-create, silence-list, silence-delete: through the HTTP API."""

from __future__ import annotations

from datetime import timedelta

import click

from telemetry.cli import main
from telemetry.cli.client import ApiClient, api_options, format_option, print_json, print_table
from telemetry.cli.common import fail, out
from telemetry.timeutil import parse_duration, parse_timestamp, utcnow


@main.command("action-log")
@api_options
@format_option
@click.option("--status", default=None, help="Only rows whose status starts with this (delivered, retry, dead, "
                                             "suppressed, blocked, ...).")
@click.option("--alarm", "alarm_id", default=None, help="Only this alarm id.")
@click.option("--limit", default=50, show_default=True, help="Newest rows shown.")
def action_log(url: str, token: str | None, fmt: str, status: str | None, alarm_id: str | None, limit: int) -> None:
    """The delivery log: every attempt and every decision not to send (targets redacted)."""
    rows = ApiClient(url, token).get("/v1/actions/deliveries", limit=limit, status=status, alarm_id=alarm_id)
    if fmt == "json":
        print_json(rows)
        return
    print_table(["Time", "Alarm", "State", "Notifier", "Target", "Status", "HTTP", "Attempts", "Error"],
                ([r["time"], r["alarm_name"], r["state"], r["notifier"], r["target"], r["status"], r["http_status"],
                  r["attempts"], r["error"]] for r in rows))


@main.command("dead-letters")
@api_options
@format_option
@click.option("--retry", "retry_id", default=None, help="Queue this dead letter again.")
def dead_letters(url: str, token: str | None, fmt: str, retry_id: str | None) -> None:
    """Actions given up after their last attempt; --retry ID sends one again."""
    api = ApiClient(url, token)
    if retry_id:
        api.request("POST", f"/v1/actions/dead-letters/{retry_id}/retry")
        out.print(f"{retry_id} queued again")
        return
    rows = api.get("/v1/actions/dead-letters")
    if fmt == "json":
        print_json(rows)
        return
    print_table(["ID", "Alarm", "Notifier", "Target", "Attempts", "Last status", "Last error"],
                ([r["id"], r["transition"].get("alarm_name"), r["notifier"], r["target"], r["attempts"],
                  r["last_status"], r["last_error"]] for r in rows))


def _silence_rows(rows: list[dict]) -> list[list]:
    return [[s["id"], ", ".join(f"{m['name']}{m['op']}{m['value']}" for m in s["matchers"]), s["starts_at"],
             s["ends_at"], s["comment"], s["created_by"]] for s in rows]


SILENCE_COLUMNS = ["ID", "Matchers", "Starts", "Ends", "Comment", "Created by"]


@main.command("silence-create")
@api_options
@format_option
@click.option("-m", "--match", "matchers", multiple=True, required=True,
              help="name=value, name!=value, name=~regex (alarm_id, alarm_name, host, role or any label); repeatable.")
@click.option("--start", default=None, help="Start time (ISO 8601); default now.")
@click.option("--end", default=None, help="End time (ISO 8601).")
@click.option("--duration", default=None, help="Length instead of --end: 30m, 2h, 1d.")
@click.option("--comment", default="", help="Why (maintenance ticket, ...).")
@click.option("--author", default="", help="Who.")
def silence_create(url: str, token: str | None, fmt: str, matchers: tuple[str, ...], start: str | None,
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
    if fmt == "json":
        print_json(s)
    else:
        print_table(SILENCE_COLUMNS, _silence_rows([s]))


@main.command("silence-list")
@api_options
@format_option
@click.option("--active", is_flag=True, help="Only silences in force now.")
def silence_list(url: str, token: str | None, fmt: str, active: bool) -> None:
    """Silences and maintenance windows."""
    rows = ApiClient(url, token).get("/v1/silences", active=str(active).lower())
    if fmt == "json":
        print_json(rows)
    else:
        print_table(SILENCE_COLUMNS, _silence_rows(rows))


@main.command("silence-delete")
@api_options
@click.argument("silence_id")
def silence_delete(url: str, token: str | None, silence_id: str) -> None:
    """End a silence now."""
    ApiClient(url, token).request("DELETE", f"/v1/silences/{silence_id}")
    out.print(f"silence {silence_id} deleted")
