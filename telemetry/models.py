"""Typed records that travel on the bus.

Field names are a contract (see ARCHITECTURE.md): agents, servers of other
versions and operators' own consumers read them. Every record therefore
tolerates and keeps unknown fields (``extra="allow"``), so a newer producer
never breaks an older consumer and nothing is lost on a round trip.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any, ClassVar, TypeVar

import msgpack
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from telemetry.timeutil import parse_timestamp, utcnow

__all__ = [
    "AlarmTransition",
    "CounterType",
    "Event",
    "Notification",
    "RawLog",
    "Record",
    "Sample",
    "decode",
    "encode",
]

R = TypeVar("R", bound="Record")

# Namespace for ids derived from a record's natural key (uuid5): the same
# input always yields the same id, which is what makes redelivery detectable.
ID_NAMESPACE = uuid.UUID("7f0c3d52-6a8e-4a4f-9a57-2f1f0d9c6e10")


_NS = ID_NAMESPACE.bytes
_sha1 = hashlib.sha1


def derived_id(*parts: object) -> str:
    """A stable id from a natural key, so a redelivered record dedups.

    It is ``uuid.uuid5(ID_NAMESPACE, "\\x1f".join(parts))`` written out, because
    the hot paths (one id per log entry) spent more in building UUID objects
    than in hashing; a test holds it equal to ``uuid5``.
    """
    return id_of_key("\x1f".join(map(str, parts)).encode())


#: RFC 4122 variant: the top two bits of hex digit 16 become ``10``.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def id_of_key(key: bytes) -> str:
    """``derived_id`` of a key already joined and encoded, for callers that keep its constant part."""
    x = _sha1(_NS + key).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"  # version 5


#: A model's slots set through their descriptors (C calls), for records built without validation.
_set_dict, _set_fields_set, _set_extra, _set_private = (
    BaseModel.__dict__[name].__set__
    for name in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"))
#: Extra-field value types that JSON mode leaves unchanged (floats are left out: inf/nan).
_PLAIN = frozenset({str, int, bool, type(None)})
_last_iso: tuple[datetime | None, str] = (None, "")


def iso_utc(dt: datetime) -> str:
    """``dt`` (aware, UTC) as pydantic's JSON mode writes it: ISO 8601 ending in ``Z``.

    Records built in one go share one timestamp object, so the last result is kept.
    """
    global _last_iso
    last = _last_iso
    if last[0] is dt:
        return last[1]
    text = dt.isoformat()
    if text.endswith("+00:00"):
        text = text[:-6] + "Z"
    _last_iso = (dt, text)
    return text


def _plain(values: dict[str, Any]) -> bool:
    return all(v.__class__ in _PLAIN for v in values.values())


class Record(BaseModel):
    """Base of every bus record: unknown fields are kept, names may be aliases."""

    # defer_build: the validators are built on first use, not at import; a CLI command that only
    # reads or prints records (`telemetry parse`) no longer pays for all of them at start.
    model_config = ConfigDict(extra="allow", populate_by_name=True, ser_json_inf_nan="constants",
                              defer_build=True)

    #: Default bus topic for this record kind (before the configured prefix).
    topic: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with contract names (``@timestamp``, not ``timestamp``)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def to_msgpack(self) -> bytes:
        return msgpack.packb(self.to_dict(), use_bin_type=True)

    @classmethod
    def from_json(cls: type[R], data: bytes | str) -> R:
        return cls.model_validate(orjson.loads(data))

    @classmethod
    def from_msgpack(cls: type[R], data: bytes) -> R:
        return cls.model_validate(msgpack.unpackb(data, raw=False))


def _ts(value: Any) -> Any:
    return parse_timestamp(value) if value is not None else value


class RawLog(Record):
    """One (possibly multi-line) log entry as read from a file or a syslog peer.

    ``id`` derives from host + inode + offset: a line re-read after a crash
    gets the same id, so the server can drop the duplicate.
    """

    topic: ClassVar[str] = "raw_logs"

    id: str = ""
    host: str
    path: str
    component: str = ""
    type: str = ""
    offset: int = 0
    inode: int = 0
    lines: list[str]
    read_at: datetime = Field(default_factory=utcnow)
    tags: list[str] = Field(default_factory=list)

    _v_read_at = field_validator("read_at", mode="before")(_ts)

    @model_validator(mode="after")
    def _fill_id(self) -> RawLog:
        if not self.id:
            self.id = derived_id("rawlog", self.host, self.inode, self.offset)
        return self

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def to_dict(self) -> dict[str, Any]:
        """As ``Record.to_dict``, written out for the common case (the agent ships one per entry)."""
        return self._plain_dict(copy=True) or super().to_dict()

    def to_json(self) -> bytes:
        return orjson.dumps(self._plain_dict(copy=False) or super().to_dict())

    def _plain_dict(self, copy: bool) -> dict[str, Any] | None:
        """The JSON-mode dict when every value is plain (as ``fast`` builds them), else None."""
        d = self.__dict__
        read_at, extra = d["read_at"], self.__pydantic_extra__
        if read_at.__class__ is not datetime or read_at.tzinfo is not timezone.utc or (extra and not _plain(extra)):
            return None
        lines, tags = d["lines"], d["tags"]
        out = {
            "id": d["id"], "host": d["host"], "path": d["path"], "component": d["component"], "type": d["type"],
            "offset": d["offset"], "inode": d["inode"], "lines": list(lines) if copy else lines,
            "read_at": iso_utc(read_at), "tags": list(tags) if copy else tags,
        }
        if extra:
            out.update(extra)
        return out


_RAWLOG_FIELDS = frozenset(RawLog.model_fields)


class Event(Record):
    """A parsed log entry or stored notification.

    Grok captures beyond the named fields ride along as extra fields, exactly
    as captured; a failed parse keeps ``message`` and tags ``_grokparsefailure``.
    """

    topic: ClassVar[str] = "events"

    id: str = ""
    timestamp: datetime = Field(default_factory=utcnow, alias="@timestamp")
    host: str = ""
    component: str = ""
    type: str = ""
    level: str | None = None
    logger: str | None = None
    pid: int | None = None
    request_id: str | None = None
    user_id: str | None = None
    project_id: str | None = None
    instance_id: str | None = None
    message: str = ""
    tags: list[str] = Field(default_factory=list)

    _v_ts = field_validator("timestamp", mode="before")(_ts)

    @model_validator(mode="after")
    def _fill_id(self) -> Event:
        if not self.id:
            self.id = _event_id(self.host, self.timestamp, self.message)
        return self


def _event_id(host: str, ts: datetime, message: str) -> str:
    digest = _sha1(message.encode("utf-8", "replace")).hexdigest()
    return derived_id("event", host, ts.isoformat(), digest)


class Notification(Record):
    """An oslo.messaging notification with its envelope unpacked."""

    topic: ClassVar[str] = "notifications"

    message_id: str
    event_type: str
    priority: str = "INFO"
    publisher_id: str = ""
    timestamp: datetime = Field(default_factory=utcnow)
    payload: dict[str, Any] = Field(default_factory=dict)

    _v_ts = field_validator("timestamp", mode="before")(_ts)

    @field_validator("priority", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class CounterType(str, Enum):  # noqa: UP042 - str() must stay "CounterType.gauge" for existing callers
    gauge = "gauge"
    delta = "delta"
    cumulative = "cumulative"


class Sample(Record):
    """A Ceilometer sample.

    ``message_signature`` is computed by the publisher over the fields as sent;
    verify it on the raw dict before building this model, because parsing
    normalises values (timestamps) and would change the signed text.
    """

    topic: ClassVar[str] = "samples"

    counter_name: str
    counter_type: CounterType
    counter_unit: str = ""
    counter_volume: float
    resource_id: str
    project_id: str | None = None
    user_id: str | None = None
    source: str = "openstack"
    timestamp: datetime = Field(default_factory=utcnow)
    resource_metadata: dict[str, Any] = Field(default_factory=dict)
    message_id: str = ""
    message_signature: str | None = None

    _v_ts = field_validator("timestamp", mode="before")(_ts)

    @model_validator(mode="after")
    def _fill_id(self) -> Sample:
        if not self.message_id:
            self.message_id = derived_id(
                "sample", self.counter_name, self.resource_id, self.timestamp.isoformat(), self.source
            )
        return self


def sample_doc(s: Sample) -> dict[str, Any]:
    """What the rule engine and the exporters read of a sample, as a plain dict (``ts`` in epoch seconds)."""
    return {"counter_name": s.counter_name, "counter_type": s.counter_type.value, "counter_unit": s.counter_unit,
            "counter_volume": s.counter_volume, "resource_id": s.resource_id,
            "project_id": s.project_id, "user_id": s.user_id, "source": s.source,
            "resource_metadata": s.resource_metadata, "message_id": s.message_id, "ts": s.timestamp.timestamp()}


class AlarmTransition(Record):
    """A change of an alarm's or a trigger's state: Aodh's history entry, plus what the dispatcher needs.

    The first eight fields are Aodh's (and its webhook body); the rest tell the
    actions stage what to do with the transition without asking the rule
    engine: where to send it, whether a repeat of the same state is wanted,
    the labels that group and inhibit it, and whether its targets come from
    the operator's own rule files (trusted) or from the API (allow-listed).
    """

    topic: ClassVar[str] = "alarm_transitions"

    alarm_id: str
    alarm_name: str
    severity: str = "low"
    previous: str
    current: str
    reason: str = ""
    reason_data: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime = Field(default_factory=utcnow)
    #: ``threshold``, ``event``, ``log``, ``composite``, ... or ``trigger`` for a Zabbix-style trigger.
    alarm_type: str = ""
    #: Action targets for the new state (the alarm's ``alarm_actions``, ``ok_actions``, ...).
    actions: list[str] = Field(default_factory=list)
    #: Aodh's ``repeat_actions``: notify again while the state stays the same.
    repeat_actions: bool = False
    #: Derived from alarm, labels, evaluation time and state: the same transition replayed keeps it.
    transition_id: str = ""
    #: Group labels (host, role, resource_id, meter, ...) for grouping, inhibition and chat messages.
    labels: dict[str, Any] = Field(default_factory=dict)
    #: ISO 8601 time of the evaluation that decided the transition.
    evaluated_at: str | None = None
    #: ``file`` when the alarm comes from the operator's rule files, ``api`` when created through the API;
    #: None (unknown) is treated like ``api``: its targets must be allow-listed.
    origin: str | None = None
    #: The rule file an alarm of ``origin: file`` was read from.
    rule_file: str | None = None

    _v_ts = field_validator("timestamp", mode="before")(_ts)


def encode(record: Record, fmt: str = "json") -> bytes:
    """Serialise a record for the bus (``json`` or ``msgpack``)."""
    if fmt == "msgpack":
        return record.to_msgpack()
    if fmt == "json":
        return record.to_json()
    raise ValueError(f"unknown record format {fmt!r} (expected json or msgpack)")


def decode(cls: type[R], data: bytes) -> R:
    """Parse bytes from the bus; JSON and msgpack are told apart by the first byte.

    A JSON record is an object, so it starts with ``{`` (after optional
    whitespace); a msgpack map starts with 0x80-0x8f, 0xde or 0xdf.
    """
    head = data.lstrip()[:1]
    if head == b"{":
        return cls.from_json(data)
    return cls.from_msgpack(data)
