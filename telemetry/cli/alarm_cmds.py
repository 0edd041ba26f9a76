"""``alarm-list``, ``alarm-show``, ``alarm-create``, ``alarm-delete``, ``alarm-history``, ``trigger-list``.

They talk to the Aodh v2 API of a running daemon, as the ceilometer client's
alarm commands did, and print Ceilometer's columns.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import click

from telemetry.cli import main
from telemetry.cli.client import ApiClient, api_options
from telemetry.cli.common import err, fail, query_option, query_params
from telemetry.cli.output import Column, emit, output_options
from telemetry.rules.models import Alarm, condition_text

LIST_COLUMNS = [Column("Alarm ID", keep=True), Column("Name", keep=True), Column("State", keep=True),
                Column("Enabled"), Column("Continuous"), Column("Alarm condition"), Column("Time constraints")]


def _constraints(alarm: dict[str, Any]) -> str:
    tcs = alarm.get("time_constraints") or []
    return "\n".join(f"{tc['name']} at {tc['start']} {tc.get('timezone') or ''} for {tc['duration']}s".replace("  ", " ")
                     for tc in tcs) or "None"


def _condition(alarm: dict[str, Any]) -> str:
    try:
        return condition_text(Alarm.model_validate(alarm))
    except ValueError:
        return f"{alarm.get('type')} rule"


@main.command("alarm-list")
@query_option
@api_options
@output_options
def alarm_list(url: str, token: str | None, fmt: str, columns: tuple[str, ...], query: str | None) -> None:
    """List alarms with Ceilometer's columns (-q filters on name, state, type, severity, enabled)."""
    alarms = ApiClient(url, token).request("GET", "/v2/alarms", params=query_params(query))
    rows = [(a["alarm_id"], a["name"], a["state"], a["enabled"], a["repeat_actions"], _condition(a),
             _constraints(a)) for a in alarms]
    emit(LIST_COLUMNS, rows, fmt, columns, alarms)


@main.command("alarm-show")
@click.argument("alarm_id")
@api_options
@output_options
def alarm_show(alarm_id: str, url: str, token: str | None, fmt: str, columns: tuple[str, ...]) -> None:
    """Show one alarm (Property / Value)."""
    alarm = ApiClient(url, token).request("GET", f"/v2/alarms/{alarm_id}")
    rows = []
    for k, v in alarm.items():
        if isinstance(v, dict) and k.endswith("_rule"):
            rows += [(k.replace("_rule", "") + "." + rk, json.dumps(rv) if isinstance(rv, (list, dict)) else rv)
                     for rk, rv in v.items()]
        else:
            rows.append((k, json.dumps(v) if isinstance(v, (list, dict)) else v))
    emit([Column("Property", keep=True), Column("Value")], rows, fmt, columns, alarm)


@main.command("alarm-create")
@click.option("--name", required=True, help="Unique name of the alarm.")
@click.option("--type", "alarm_type", default="threshold", show_default=True,
              type=click.Choice(["threshold", "event", "log", "composite"]))
@click.option("-m", "--meter-name", help="Meter to evaluate (threshold).")
@click.option("--threshold", type=float, help="Threshold (threshold, log count).")
@click.option("--comparison-operator", default="gt", show_default=True,
              type=click.Choice(["lt", "le", "eq", "ne", "ge", "gt"]))
@click.option("--statistic", default="avg", show_default=True, type=click.Choice(["max", "min", "avg", "sum", "count"]))
@click.option("--period", type=int, default=60, show_default=True, help="Seconds per evaluation period.")
@click.option("--evaluation-periods", type=int, default=1, show_default=True)
@click.option("-q", "--query", default=None,
              help="threshold/event: 'field=value;...'; log: a Kibana-style query such as 'level:ERROR AND component:nova'.")
@click.option("--user-id", default=None, help="Owner of the alarm (default: none, as an all-in-one without Keystone).")
@click.option("--project-id", default=None, help="Project of the alarm (default: none).")
@click.option("--event-type", default="*", help="Event type pattern (event).")
@click.option("--mode", default="count", type=click.Choice(["count", "rate", "seen"]), help="Log alarm mode.")
@click.option("--composite-rule", default=None, help="JSON and/or tree (composite).")
@click.option("--group-by", multiple=True, help="Evaluate per value of this sample field (e.g. resource_id).")
@click.option("--severity", default="low", type=click.Choice(["low", "moderate", "critical"]))
@click.option("--alarm-action", multiple=True, help="URL called on transition to alarm.")
@click.option("--ok-action", multiple=True, help="URL called on transition to ok.")
@click.option("--insufficient-data-action", multiple=True, help="URL called on transition to insufficient data.")
@click.option("--repeat-actions/--no-repeat-actions", default=False)
@api_options
@output_options
def alarm_create(url: str, token: str | None, fmt: str, columns: tuple[str, ...], **o: Any) -> None:
    """Create an alarm through the Aodh API."""
    body: dict[str, Any] = {
        **{k: o[k] for k in ("user_id", "project_id") if o[k]},
        "name": o["name"], "type": o["alarm_type"], "severity": o["severity"], "repeat_actions": o["repeat_actions"],
        "alarm_actions": list(o["alarm_action"]), "ok_actions": list(o["ok_action"]),
        "insufficient_data_actions": list(o["insufficient_data_action"])}
    items = [dict(zip(("field", "value"), p.split("=", 1))) for p in (o["query"] or "").split(";") if "=" in p]
    kind = o["alarm_type"]
    if kind == "threshold":
        if not o["meter_name"] or o["threshold"] is None:
            fail("a threshold alarm needs --meter-name and --threshold")
        body["threshold_rule"] = {
            "meter_name": o["meter_name"], "threshold": o["threshold"], "comparison_operator": o["comparison_operator"],
            "statistic": o["statistic"], "period": o["period"], "evaluation_periods": o["evaluation_periods"],
            "query": [{**i, "op": "eq"} for i in items], "group_by": list(o["group_by"])}
    elif kind == "event":
        body["event_rule"] = {"event_type": o["event_type"], "query": [{**i, "op": "eq"} for i in items]}
    elif kind == "log":
        if not o["query"]:
            fail("a log alarm needs --query, e.g. 'level:ERROR AND component:nova'")
        body["log_rule"] = {"query": o["query"], "mode": o["mode"], "period": o["period"],
                            "comparison_operator": o["comparison_operator"],
                            "threshold": 1.0 if o["threshold"] is None else o["threshold"]}
    else:
        if not o["composite_rule"]:
            fail("a composite alarm needs --composite-rule")
        try:
            body["composite_rule"] = json.loads(o["composite_rule"])
        except ValueError as exc:
            fail(f"--composite-rule is not JSON: {exc}")
    alarm = ApiClient(url, token).request("POST", "/v2/alarms", json=body)
    for w in alarm.get("warnings") or []:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    emit(LIST_COLUMNS[:3] + [LIST_COLUMNS[5]], [(alarm["alarm_id"], alarm["name"], alarm["state"], _condition(alarm))],
         fmt, columns, alarm)


@main.command("alarm-delete")
@click.argument("alarm_id")
@api_options
def alarm_delete(alarm_id: str, url: str, token: str | None) -> None:
    """Delete an alarm (its history stays until its retention expires)."""
    ApiClient(url, token).request("DELETE", f"/v2/alarms/{alarm_id}")
    click.echo(f"deleted alarm {alarm_id}")


@main.command("alarm-history")
@click.argument("alarm_id")
@api_options
@output_options
def alarm_history(alarm_id: str, url: str, token: str | None, fmt: str, columns: tuple[str, ...]) -> None:
    """An alarm's changes, newest first (Type, Timestamp, Detail)."""
    changes = ApiClient(url, token).get(f"/v2/alarms/{alarm_id}/history")
    emit([Column("Type", keep=True), Column("Timestamp", keep=True), Column("Detail")],
         [(c["type"], c["timestamp"], _detail(c)) for c in changes], fmt, columns, changes)


def _detail(change: dict[str, Any]) -> str:
    try:
        d = json.loads(change["detail"])
    except (ValueError, TypeError):
        return str(change.get("detail"))
    if change["type"] == "state transition":
        return f"state: {d.get('state')} ({d.get('transition_reason', '')})"
    return json.dumps(d, sort_keys=True)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    return " ".join(f"{n}{u}" for n, u in parts if n)[:8] or "0s"


@main.command("trigger-list")
@click.option("--host", default=None, help="Only this host's triggers.")
@click.option("--problems", is_flag=True, help="Only triggers in PROBLEM.")
@click.option("--min-severity", default=None,
              type=click.Choice(["not classified", "information", "warning", "average", "high", "disaster"]))
@api_options
@output_options
def trigger_list(url: str, token: str | None, fmt: str, columns: tuple[str, ...], host: str | None, problems: bool,
                 min_severity: str | None) -> None:
    """Zabbix's problem view: Severity, Status, Info, Last change, Age, Acknowledged, Host, Name."""
    triggers = ApiClient(url, token).get("/v1/triggers", host=host, status="PROBLEM" if problems else None,
                                         min_severity=min_severity)
    rows = []
    for t in triggers:
        last = datetime.fromisoformat(t["last_change"]).strftime("%Y-%m-%d %H:%M:%S") if t["last_change"] else ""
        rows.append((t["severity"].title(), t["status"], t.get("info", ""), last, _age(t["age_seconds"]),
                     "Yes" if t["acknowledged"] else "No", t["host"], t["name"]))
    emit([Column("Severity", keep=True), Column("Status"), Column("Info"), Column("Last change", keep=True),
          Column("Age"), Column("Acknowledged"), Column("Host", keep=True), Column("Name")], rows, fmt, columns,
         triggers, title=f"{len(rows)} triggers at {time.strftime('%H:%M:%S')}")


@main.command("trigger-ack")
@click.argument("trigger_id")
@click.option("-m", "--message", required=True, help="Comment stored with the acknowledgement.")
@api_options
def trigger_ack(trigger_id: str, message: str, url: str, token: str | None) -> None:
    """Acknowledge a trigger's problem with a comment."""
    t = ApiClient(url, token).request("POST", f"/v1/triggers/{trigger_id}/acknowledge", json={"message": message})
    click.echo(f"acknowledged {t['name']} on {t['host']}")
