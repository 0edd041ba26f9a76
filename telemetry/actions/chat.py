"""Slack-compatible incoming webhooks (also Mattermost and Rocket.Chat).

``slack+https://hooks.slack.com/services/...``, ``mattermost+https://...``,
``rocketchat+https://...`` or ``chat+https://...``. The body has a plain
``text`` (all three render it, and it is what phone notifications show) plus
Slack ``blocks`` with the alarm, value, host and a link; Mattermost and
Rocket.Chat ignore ``blocks`` and show ``text``.
"""

from __future__ import annotations

from typing import Any

from telemetry.actions.base import Notifier, summary
from telemetry.actions.models import SendOutcome, alarm_value, labels_of

SCHEMES = ("slack", "mattermost", "rocketchat", "chat")
ICONS = {"alarm": ":red_circle:", "ok": ":large_green_circle:", "insufficient data": ":white_circle:"}


def chat_body(transitions: list[dict[str, Any]], link: Any) -> dict[str, Any]:
    lines = []
    blocks: list[dict[str, Any]] = []
    for t in transitions:
        url = link(t)
        icon = ICONS.get(str(t.get("current")), ":grey_question:")
        lines.append(f"{icon} {summary(t)} <{url}|details>")
        labels = labels_of(t)
        value = alarm_value(t)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{t.get('alarm_name')}* is "
                                                   f"*{t.get('current')}* (was {t.get('previous')})\n{t.get('reason', '')}"}})
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Severity*\n{t.get('severity')}"},
            {"type": "mrkdwn", "text": f"*Value*\n{'' if value is None else value}"},
            {"type": "mrkdwn", "text": f"*Host*\n{labels.get('host', '')}"},
            {"type": "mrkdwn", "text": f"*Link*\n<{url}|{t.get('alarm_id')}>"},
        ]})
    if len(transitions) > 1:
        lines.insert(0, f"{len(transitions)} alarm transitions:")
        blocks.insert(0, {"type": "header", "text": {"type": "plain_text", "text": lines[0]}})
    return {"text": "\n".join(lines), "blocks": blocks}


class ChatNotifier(Notifier):
    kind = "chat"
    groupable = True

    @classmethod
    def claims(cls, target: str) -> bool:
        return target.split("+", 1)[0] in SCHEMES and "+http" in target

    async def send(self, target: str, transitions: list[dict[str, Any]], delivery_id: str) -> SendOutcome:
        return await self.ctx.http.post_json(self.url(target), chat_body(transitions, self.ctx.link),
                                             delivery_id=delivery_id)
