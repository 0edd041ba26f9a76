"""Events into Grafana Loki's push API (``POST /loki/api/v1/push``).

A stream per combination of a few low-cardinality fields (``host``,
``component``, ``level`` by default, plus static labels); everything else of
the event goes into the line as JSON, so LogQL's ``| json`` gets it back.
Snappy-compressed protobuf by default (what Promtail sends), or JSON.

Loki wants each stream's entries in time order within a push, so entries
are sorted per stream. Loki answers a push with invalid entries (too old,
too far behind, out of order on an old Loki) with 400 but stores the valid
ones beside them; the sink then splits the batch in time order until each
refused entry stands alone, and dead-letters it with Loki's message. Sending
accepted entries again is harmless: Loki drops an entry equal to one it holds
(same stream, timestamp and line), and the line carries the event id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import httpx
import orjson

from telemetry.config.sinks import LokiSink
from telemetry.runtime import Runtime
from telemetry.sinks.base import TAKEN, SinkItem, SinkStage, Verdict
from telemetry.timeutil import parse_timestamp

log = logging.getLogger(__name__)

PUSH_PATH = "/loki/api/v1/push"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Statuses the sink sends again: overload, unavailability, a proxy's refusal; never the entries' fault.
RETRYABLE = frozenset({401, 403, 404, 408, 429, 500, 502, 503, 504})
#: Labels of a stream whose event has none of the configured fields.
FALLBACK_LABELS = {"job": "telemetry"}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_string(labels: Mapping[str, str]) -> str:
    """Loki's (Prometheus') label set text: ``{a="1", b="2"}``, names sorted."""
    return "{" + ", ".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"


def nanos(timestamp: str) -> int:
    """Epoch nanoseconds of an event's ``@timestamp`` (microsecond precision, so exact)."""
    return (parse_timestamp(timestamp) - EPOCH) // timedelta(microseconds=1) * 1000


@lru_cache(maxsize=1)
def _push_request_class() -> Any:
    """Loki's ``logproto.PushRequest`` (pkg/push/push.proto), described in code: no generated module."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    F = descriptor_pb2.FieldDescriptorProto
    ts_file = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(ts_file)
    push = descriptor_pb2.FileDescriptorProto(
        name="telemetry/loki_push.proto",
        package="logproto",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    req = push.message_type.add(name="PushRequest")
    req.field.add(
        name="streams",
        number=1,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".logproto.StreamAdapter",
    )
    stream = push.message_type.add(name="StreamAdapter")
    stream.field.add(name="labels", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    stream.field.add(
        name="entries",
        number=2,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".logproto.EntryAdapter",
    )
    stream.field.add(name="hash", number=3, type=F.TYPE_UINT64, label=F.LABEL_OPTIONAL)
    entry = push.message_type.add(name="EntryAdapter")
    entry.field.add(
        name="timestamp",
        number=1,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_OPTIONAL,
        type_name=".google.protobuf.Timestamp",
    )
    entry.field.add(name="line", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(ts_file)
    pool.Add(push)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


Streams = dict[str, list[tuple[int, str]]]


def encode_protobuf(streams: Streams) -> bytes:
    import cramjam

    req = _push_request_class()()
    for labels, entries in streams.items():
        s = req.streams.add(labels=labels)
        for ns, line in entries:
            e = s.entries.add(line=line)
            e.timestamp.seconds, e.timestamp.nanos = divmod(ns, 1_000_000_000)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def encode_json(streams: Streams, labels_of: Mapping[str, dict[str, str]]) -> bytes:
    return orjson.dumps(
        {
            "streams": [
                {"stream": labels_of[labels], "values": [[str(ns), line] for ns, line in entries]}
                for labels, entries in streams.items()
            ]
        }
    )


class LokiStage(SinkStage):
    sink = "loki"

    def __init__(self, rt: Runtime, cfg: LokiSink) -> None:
        super().__init__(rt, cfg)
        self.loki = cfg
        self.http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self.loki.encoding == "protobuf":
            try:
                _push_request_class()
                import cramjam  # noqa: F401
            except ImportError as exc:
                raise RuntimeError(
                    "sinks.loki with encoding protobuf needs protobuf and cramjam: "
                    "pip install 'openstack-telemetry[loki]' (or set encoding: json)"
                ) from exc
        cfg = self.loki
        headers = {"X-Scope-OrgID": cfg.tenant_id} if cfg.tenant_id else {}
        auth = (cfg.username, cfg.password.get_secret_value()) if cfg.username and cfg.password else None
        self.http = httpx.AsyncClient(
            base_url=cfg.url,
            timeout=cfg.timeout,
            headers=headers,
            auth=auth,
            verify=cfg.ca_file or cfg.verify,
        )
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    def labels(self, doc: Mapping[str, Any]) -> dict[str, str]:
        out = dict(self.loki.static_labels)
        for name in self.loki.labels:
            value = doc.get(name)
            if value:
                out[name] = str(value)
        return out or dict(FALLBACK_LABELS)

    def line(self, doc: Mapping[str, Any]) -> str:
        """The event without labels and time, as JSON, cut to ``max_line_bytes`` by shortening the message."""
        skip = {"@timestamp", *self.loki.labels}
        rest = {k: v for k, v in doc.items() if k not in skip and v is not None and v != [] and v != ""}
        text = orjson.dumps(rest, default=str).decode()
        excess = len(text.encode()) - self.loki.max_line_bytes
        if excess > 0 and isinstance(rest.get("message"), str):
            rest["message"] = (
                rest["message"]
                .encode()[: max(0, len(rest["message"].encode()) - excess - 64)]
                .decode(errors="ignore")
            )
            rest["truncated"] = True
            text = orjson.dumps(rest, default=str).decode()
        return text

    async def push(self, items: list[SinkItem]) -> Mapping[str, Verdict]:
        entries = sorted(((nanos(it.doc["@timestamp"]), it) for it in items), key=lambda e: e[0])
        verdicts: dict[str, Verdict] = {}
        await self._push_split(entries, verdicts)
        return verdicts

    async def _push_split(self, entries: list[tuple[int, SinkItem]], verdicts: dict[str, Verdict]) -> None:
        """Push; on a 400 or 413, halve (in time order) until each refused entry stands alone."""
        status, text = await self._post(entries)
        if 200 <= status < 300:
            verdicts.update((it.key, TAKEN) for _, it in entries)
        elif status in (400, 413) and len(entries) > 1:
            mid = len(entries) // 2
            await self._push_split(entries[:mid], verdicts)
            await self._push_split(entries[mid:], verdicts)
        elif status in (400, 413):
            verdicts[entries[0][1].key] = Verdict("refused", str(status), text[:500])
        else:
            reason = str(status) if status in RETRYABLE or status >= 500 else f"request_{status}"
            verdicts.update((it.key, Verdict("retry", reason, text[:300])) for _, it in entries)

    async def _post(self, entries: list[tuple[int, SinkItem]]) -> tuple[int, str]:
        assert self.http is not None
        streams: Streams = {}
        labels_of: dict[str, dict[str, str]] = {}
        for ns, it in entries:  # already in time order, so each stream's entries are too
            labels = self.labels(it.doc)
            key = label_string(labels)
            labels_of.setdefault(key, labels)
            streams.setdefault(key, []).append((ns, self.line(it.doc)))
        if self.loki.encoding == "protobuf":
            body, ctype = encode_protobuf(streams), "application/x-protobuf"
        else:
            body, ctype = encode_json(streams, labels_of), "application/json"
        r = await self.http.post(PUSH_PATH, content=body, headers={"Content-Type": ctype})
        return r.status_code, r.text
