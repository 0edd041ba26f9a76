"""The oslo.messaging notification envelopes, unpacked (pure functions, no I/O).

oslo.messaging's ``messagingv2`` driver wraps each notification as
``{"oslo.version": "2.0", "oslo.message": "<JSON text>"}``; the older
``messaging`` driver (v1) sends the message itself. Either way the message
holds ``message_id, event_type, priority, publisher_id, timestamp, payload``
and the request context flattened into ``_context_*`` keys
(``_context_request_id``, ``_context_user_id``, ``_context_project_id``...).

Anything else is refused with a :class:`Malformed` whose ``reason`` becomes
the metric label and the dead letter's header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from telemetry.bounds import TooComplex, check_shape
from telemetry.errors import problems
from telemetry.models import Notification

SUPPORTED_MAJOR = "2"
CONTEXT_PREFIX = "_context_"
REQUIRED = ("message_id", "event_type")


class Malformed(ValueError):
    """A message that is no oslo notification; ``reason`` is short and label-safe."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def unpack(body: bytes | str, max_bytes: int) -> dict[str, Any]:
    """The oslo message dict of an AMQP body, v2 envelope or v1 plain form."""
    size = len(body)
    if size > max_bytes:
        raise Malformed("too_large", f"{size} bytes is over the {max_bytes}-byte limit")
    try:
        outer = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Malformed("not_json", f"the body is not JSON: {exc}") from None
    if not isinstance(outer, dict):
        raise Malformed("not_an_object", f"the body is a JSON {type(outer).__name__}, not an object")
    if "oslo.version" in outer or "oslo.message" in outer:
        version = str(outer.get("oslo.version", ""))
        if version.split(".", 1)[0] != SUPPORTED_MAJOR:
            raise Malformed("bad_envelope", f"unsupported oslo.version {version!r} (expected 2.x)")
        inner = outer.get("oslo.message")
        if not isinstance(inner, str):
            raise Malformed("bad_envelope", "oslo.message must be a JSON string")
        try:
            msg = orjson.loads(inner)
        except orjson.JSONDecodeError as exc:
            raise Malformed("bad_envelope", f"oslo.message is not JSON: {exc}") from None
        if not isinstance(msg, dict):
            raise Malformed("bad_envelope", "oslo.message is not a JSON object")
    else:
        msg = outer
    for field in REQUIRED:
        if not isinstance(msg.get(field), str) or not msg[field]:
            raise Malformed(f"missing:{field}", f"the notification has no {field}")
    return msg


def context(msg: Mapping[str, Any]) -> dict[str, Any]:
    """The request context (``_context_user_id`` -> ``user_id``), as Ceilometer's ``ctxt``."""
    return {k[len(CONTEXT_PREFIX):]: v for k, v in msg.items() if k.startswith(CONTEXT_PREFIX)}


def document(msg: Mapping[str, Any]) -> dict[str, Any]:
    """What meter definitions' JSONPaths see, shaped as Ceilometer's notification endpoints see it."""
    return {
        "event_type": msg.get("event_type"),
        "publisher_id": msg.get("publisher_id"),
        "priority": msg.get("priority"),
        "payload": msg.get("payload"),
        "ctxt": context(msg),
        "metadata": {"message_id": msg.get("message_id"), "timestamp": msg.get("timestamp")},
    }


def to_notification(msg: Mapping[str, Any]) -> Notification:
    """The Notification record; ``_context_*`` keys ride along (the event store reads them)."""
    data = {k: v for k, v in msg.items() if v is not None}
    try:
        check_shape(data)
    except TooComplex as exc:
        raise Malformed("too_complex", f"the notification {exc}") from None
    if not isinstance(data.get("payload", {}), dict):
        raise Malformed("bad_payload", f"payload is a {type(msg['payload']).__name__}, not an object")
    try:
        return Notification.model_validate(data)
    except ValidationError as exc:
        where, text = problems(exc)[0]
        where = where or "notification"
        raise Malformed(f"invalid:{where}", f"{where}: {text}") from None
