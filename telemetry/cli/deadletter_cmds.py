"""dead-letter-list, dead-letter-show, dead-letter-replay, dead-letter-delete: records a stage refused.

(``dead-letters`` is another thing: alarm notifications given up after their last attempt.)
"""

from __future__ import annotations

from datetime import datetime, timezone

import click

from telemetry.cli import main
from telemetry.cli.client import ApiClient, api_options
from telemetry.cli.common import limit_option, out
from telemetry.cli.output import Column, emit, output_options


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@main.command("dead-letter-list")
@api_options
@output_options
@click.option("--stage", default=None, help="Only what this stage refused (stage.parse, stage.events, ...).")
@click.option("--topic", default=None, help="Only records from this topic (raw_logs, events, samples, ...).")
@click.option("--reason", default=None, help="Only this reason, or reasons starting with it (invalid:, failed:).")
@limit_option(50, "Newest dead letters shown.")
def dead_letter_list(url: str, token: str | None, fmt: str, columns: tuple[str, ...], stage: str | None,
                     topic: str | None, reason: str | None, limit: int) -> None:
    """Records a stage refused, newest first, with why (see dead-letter-show and dead-letter-replay)."""
    rows = ApiClient(url, token).get("/v1/dead-letters", limit=limit, stage=stage, topic=topic, reason=reason)
    emit([Column("ID", keep=True), Column("Time", keep=True), Column("Stage"), Column("Topic"), Column("Reason"),
          Column("Replays"), Column("Content", first_line=True)],
         ([r["id"], _when(r["time"]), r["stage"], r["topic"], r["reason"], r["replays"], r["preview"][:60]]
          for r in rows), fmt, columns, rows)


@main.command("dead-letter-show")
@click.argument("letter_id")
@api_options
@output_options
def dead_letter_show(letter_id: str, url: str, token: str | None, fmt: str, columns: tuple[str, ...]) -> None:
    """One dead letter: why it was refused, and the record as it arrived."""
    d = ApiClient(url, token).get(f"/v1/dead-letters/{letter_id}")
    emit([Column("Field", keep=True), Column("Value")], [
        ("ID", d["id"]), ("Time", _when(d["time"])), ("Stage", d["stage"]), ("Topic", d["topic"]),
        ("Reason", d["reason"]), ("Error", d["error"]), ("Size", d["size"]), ("Replays", d["replays"]),
        (f"Content ({d['encoding']})", d["value"]),
    ], fmt, columns, d)


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
