"""dead-letter-list, dead-letter-show, dead-letter-replay, dead-letter-delete: records a stage refused.

(``dead-letters`` is another thing: alarm notifications given up after their last attempt.)
"""

from __future__ import annotations

from datetime import datetime, timezone

import click

from telemetry.cli import main
from telemetry.cli.client import ApiClient, api_options, format_option, print_json, print_table
from telemetry.cli.common import out


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@main.command("dead-letter-list")
@api_options
@format_option
@click.option("--stage", default=None, help="Only what this stage refused (stage.parse, stage.events, ...).")
@click.option("--topic", default=None, help="Only records from this topic (raw_logs, events, samples, ...).")
@click.option("--reason", default=None, help="Only this reason, or reasons starting with it (invalid:, failed:).")
@click.option("--limit", default=50, show_default=True, help="Newest dead letters shown.")
def dead_letter_list(url: str, token: str | None, fmt: str, stage: str | None, topic: str | None,
                     reason: str | None, limit: int) -> None:
    """Records a stage refused, newest first, with why (see dead-letter-show and dead-letter-replay)."""
    rows = ApiClient(url, token).get("/v1/dead-letters", limit=limit, stage=stage, topic=topic, reason=reason)
    if fmt == "json":
        print_json(rows)
        return
    print_table(["ID", "Time", "Stage", "Topic", "Reason", "Replays", "Content"],
                ([r["id"], _when(r["time"]), r["stage"], r["topic"], r["reason"], r["replays"],
                  r["preview"][:60]] for r in rows))


@main.command("dead-letter-show")
@click.argument("letter_id")
@api_options
@format_option
def dead_letter_show(letter_id: str, url: str, token: str | None, fmt: str) -> None:
    """One dead letter: why it was refused, and the record as it arrived."""
    d = ApiClient(url, token).get(f"/v1/dead-letters/{letter_id}")
    if fmt == "json":
        print_json(d)
        return
    print_table(["Field", "Value"], [
        ("ID", d["id"]), ("Time", _when(d["time"])), ("Stage", d["stage"]), ("Topic", d["topic"]),
        ("Reason", d["reason"]), ("Error", d["error"]), ("Size", d["size"]), ("Replays", d["replays"]),
        (f"Content ({d['encoding']})", d["value"]),
    ])


@main.command("dead-letter-replay")
@click.argument("letter_id")
@api_options
def dead_letter_replay(letter_id: str, url: str, token: str | None) -> None:
    """Publish the record again on the topic it came from (once the cause is fixed)."""
    r = ApiClient(url, token).request("POST", f"/v1/dead-letters/{letter_id}/replay")
    out.print(f"{letter_id} published again on {r['topic']}", highlight=False)


@main.command("dead-letter-delete")
@click.argument("letter_id")
@api_options
def dead_letter_delete(letter_id: str, url: str, token: str | None) -> None:
    """Forget a dead letter."""
    ApiClient(url, token).request("DELETE", f"/v1/dead-letters/{letter_id}")
    out.print(f"{letter_id} deleted", highlight=False)
