"""``mailto:ops@example.com[,oncall@example.com]`` actions over SMTP (STARTTLS, AUTH).

smtplib runs in a worker thread: mail is rare, and the standard library's
client is the one every relay has been tested against. SMTP's own codes
classify the outcome: 4xx is temporary (greylisting, a full queue) and
retried, 5xx (unknown user, rejected auth) is not.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote

from telemetry.actions.base import Notifier, summary
from telemetry.actions.models import SendOutcome, alarm_value, labels_of
from telemetry.config.rules import SmtpConfig


def recipients(target: str) -> list[str]:
    addrs = unquote(target[len("mailto:"):].split("?", 1)[0])
    return [a.strip() for a in addrs.split(",") if a.strip()]


def build_message(cfg: SmtpConfig, to: list[str], transitions: list[dict[str, Any]], link: Any,
                  delivery_id: str) -> EmailMessage:
    msg = EmailMessage()
    first = transitions[0]
    if len(transitions) == 1:
        msg["Subject"] = summary(first)[:200]
    else:
        msg["Subject"] = f"[{len(transitions)} alarms] " + ", ".join(str(t.get("alarm_name")) for t in transitions)[:180]
    msg["From"] = cfg.from_addr
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(idstring=delivery_id.replace("-", "")[:24], domain="telemetry")
    msg["X-Telemetry-Delivery"] = delivery_id
    parts = []
    for t in transitions:
        labels = labels_of(t)
        value = alarm_value(t)
        parts.append("\n".join([
            f"Alarm:    {t.get('alarm_name')} ({t.get('alarm_id')})",
            f"State:    {t.get('previous')} -> {t.get('current')}",
            f"Severity: {t.get('severity')}",
            f"Value:    {'' if value is None else value}",
            f"Host:     {labels.get('host', '')}",
            f"Reason:   {t.get('reason', '')}",
            f"Time:     {t.get('timestamp')}",
            f"Link:     {link(t)}",
        ]))
    msg.set_content("\n\n".join(parts) + "\n")
    return msg


def _send(cfg: SmtpConfig, msg: EmailMessage, to: list[str], timeout: float) -> None:
    with smtplib.SMTP(cfg.host, cfg.port, timeout=timeout) as smtp:
        smtp.ehlo()
        if cfg.starttls:
            ctx = ssl.create_default_context(cafile=cfg.ca_file)
            if not cfg.verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            smtp.starttls(context=ctx)
            smtp.ehlo()
        if cfg.username:
            password = cfg.password.get_secret_value() if cfg.password else ""
            if "plain" in smtp.esmtp_features.get("auth", "").lower().split():
                # One mechanism, one answer: smtplib's login() falls through to AUTH LOGIN after a
                # 535, which some servers never answer, turning a wrong password into a timeout.
                smtp.user, smtp.password = cfg.username, password
                smtp.auth("PLAIN", smtp.auth_plain)
            else:
                smtp.login(cfg.username, password)
        smtp.send_message(msg, from_addr=cfg.from_addr, to_addrs=to)


class EmailNotifier(Notifier):
    kind = "email"
    groupable = True
    http_target = False

    @classmethod
    def claims(cls, target: str) -> bool:
        return target.startswith("mailto:")

    async def send(self, target: str, transitions: list[dict[str, Any]], delivery_id: str) -> SendOutcome:
        cfg = self.ctx.config.smtp
        to = recipients(target)
        if not to:
            return SendOutcome.permanent(f"no recipient in {target!r}")
        msg = build_message(cfg, to, transitions, self.ctx.link, delivery_id)
        try:
            await asyncio.to_thread(_send, cfg, msg, to, self.ctx.config.timeout)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [c for c, _ in exc.recipients.values()]
            text = f"recipients refused: {exc.recipients}"
            return SendOutcome.transient(text, codes[0]) if all(400 <= c < 500 for c in codes) else \
                SendOutcome.permanent(text, codes[0] if codes else None)
        except smtplib.SMTPResponseException as exc:
            text = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
            return SendOutcome.transient(text, exc.smtp_code) if 400 <= exc.smtp_code < 500 else \
                SendOutcome.permanent(text, exc.smtp_code)
        except (OSError, smtplib.SMTPException) as exc:  # refused, timeout, TLS failure, disconnect
            return SendOutcome.transient(f"{type(exc).__name__}: {exc}")
        return SendOutcome.success(250)
