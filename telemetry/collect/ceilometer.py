"""Inputs for Ceilometer's own publishers, unchanged on the Ceilometer side.

- ``udp://host:4952``: one msgpack map per datagram, the metering message of
  ``ceilometer/publisher/udp.py`` (``meter_message_from_counter``, signed).
- ``http://host:8777/v1/ceilometer/samples``: ``ceilometer/publisher/http.py``
  POSTs a JSON list (``batch=true``, the default) or one object per request,
  to whatever path its URL names; we serve this one.
- ``notifier://``: oslo notifications on the cloud's RabbitMQ, ``event_type``
  ``telemetry.polling`` (payload ``{"samples": [...]}``, the polling agent) or
  ``metering`` / ``metering.<meter>`` (payload a list, the notifier publisher).
  :func:`samples_from_notification` turns one into samples; the AMQP listener
  calls it.

Every message is verified on the raw dict, before the Sample model parses
(and so normalises) it, because the HMAC covers the text as sent. Bad input is
logged, counted in ``telemetry_stage_records_rejected_total`` and skipped; it
never stops the listener or the good samples beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
from pydantic import ValidationError

from telemetry.bounds import PeerRateLimit, TooComplex, check_shape
from telemetry.bus import Bus
from telemetry.bus.records import publish_records
from telemetry.component import Component
from telemetry.config import Settings
from telemetry.config.base import split_hostport
from telemetry.errors import describe
from telemetry.meter.signature import verify_signature
from telemetry.metrics import RECORDS_IN, RECORDS_OUT, RECORDS_REJECTED
from telemetry.deadletters.refusals import Refusals
from telemetry.models import Sample
from telemetry.netstats import DropWatch
from telemetry.runtime import Runtime

log = logging.getLogger(__name__)

STAGE_UDP = "source.ceilometer_udp"
STAGE_HTTP = "source.ceilometer_http"
STAGE_NOTIFIER = "source.ceilometer_notifier"
HTTP_PATH = "/v1/ceilometer/samples"
#: Event types that carry samples (ceilometer/telemetry/notifications.py, publisher/messaging.py).
POLLING_EVENT = "telemetry.polling"
METERING_EVENT = "metering"
MAX_BATCH = 500
QUEUE_SIZE = 10_000
#: Receive buffer asked for the UDP socket (bytes), so bursts wait in the kernel rather than drop.
RECEIVE_BUFFER = 4 << 20
#: Seconds between reads of the kernel's drop count; seconds a loss keeps /healthz degraded.
DROPS_EVERY = 1.0
LOSS_REPORTED_FOR = 60.0

#: Ceilometer ``Sample.as_dict()`` names (the http:// publisher's body) -> metering message names.
_AS_DICT_NAMES = {"name": "counter_name", "type": "counter_type", "unit": "counter_unit",
                  "volume": "counter_volume", "id": "message_id"}


class Rejected(ValueError):
    """A message refused, with the metric's ``reason`` label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def sample_from_message(raw: Any, secret: str | None, trusted: bool = False) -> Sample:
    """One Ceilometer metering message (or ``Sample.as_dict()``) as a verified Sample.

    With a ``secret``, a signed message must verify; an unsigned one is refused
    unless the transport itself was authenticated (``trusted``: an HTTP POST
    with an API token, as Ceilometer's http:// publisher never signs).
    Raises :class:`Rejected` with reason ``malformed``, ``too_complex``, ``unsigned`` or ``bad_signature``.
    """
    if not isinstance(raw, Mapping):
        raise Rejected("malformed", f"a sample must be a map, got {type(raw).__name__}")
    try:
        check_shape(raw)
    except TooComplex as exc:
        raise Rejected("too_complex", f"the sample {exc}") from None
    if secret:
        signature = raw.get("message_signature")
        if not signature:
            if not trusted:
                raise Rejected("unsigned", "unsigned sample while telemetry_secret is set")
        elif not verify_signature(raw, secret):
            raise Rejected("bad_signature", "message_signature does not match the content (wrong secret or edited)")
    data = dict(raw)
    if "counter_name" not in data:
        for short, long in _AS_DICT_NAMES.items():
            if short in data and long not in data:
                data[long] = data.pop(short)
    if data.get("counter_volume") is None:
        raise Rejected("malformed", "counter_volume is missing")
    if data.get("monotonic_time") is None:
        data.pop("monotonic_time", None)
    if data.get("source") is None:
        data.pop("source", None)
    try:
        return Sample.model_validate(data)
    except ValidationError as exc:
        raise Rejected("malformed", describe(exc, root="sample")) from None


def _describe(raw: Any) -> str:
    if isinstance(raw, Mapping):
        return f"{raw.get('counter_name') or raw.get('name')!s} of {raw.get('resource_id')!s}"
    return type(raw).__name__


def reject(stage: str, reason: str, message: str, what: str = "") -> None:
    """Count and log one refused message: operators see what and why."""
    RECORDS_REJECTED.labels(stage=stage, reason=reason).inc()
    log.warning("%s: rejected %s: %s (%s)", stage, what or "a message", message, reason)


def accept_messages(raws: Iterable[Any], secret: str | None, stage: str, trusted: bool = False
                    ) -> tuple[list[Sample], list[tuple[str, str, Any]]]:
    """Verified samples from raw messages, and (reason, message, the message) of each refused (counted, logged)."""
    good: list[Sample] = []
    refused: list[tuple[str, str, Any]] = []
    for raw in raws:
        RECORDS_IN.labels(stage=stage).inc()
        try:
            good.append(sample_from_message(raw, secret, trusted))
        except Rejected as exc:
            refused.append((exc.reason, str(exc), raw))
            reject(stage, exc.reason, str(exc), _describe(raw))
        except Exception as exc:  # nothing a publisher sends may stop the input
            refused.append(("malformed", f"{type(exc).__name__}: {str(exc)[:200]}", raw))
            reject(stage, "malformed", refused[-1][1], _describe(raw))
    return good, refused


def _as_bytes(item: Any) -> bytes:
    """A refused message's JSON for its dead letter; what JSON cannot carry is described instead."""
    try:
        return orjson.dumps(item, default=str)
    except (TypeError, ValueError):
        return f"(not encodable as JSON: {type(item).__name__})".encode()


@dataclass
class NotificationSamples:
    """What a notification held: ``matched`` is False for event types that carry no samples."""

    matched: bool
    samples: list[Sample] = field(default_factory=list)
    rejected: int = 0


def _unwrap(message: Any) -> Mapping[str, Any]:
    if hasattr(message, "model_dump"):  # a telemetry.models.Notification
        message = message.model_dump(mode="json")
    if isinstance(message, Mapping) and "oslo.message" in message:  # oslo.messaging v2 envelope
        inner = message["oslo.message"]
        message = json.loads(inner) if isinstance(inner, (str, bytes)) else inner
    if not isinstance(message, Mapping):
        raise Rejected("malformed", f"a notification must be a map, got {type(message).__name__}")
    return message


def samples_from_notification(message: Any, secret: str | None) -> NotificationSamples:
    """Samples from one oslo notification sent by Ceilometer (pure: no I/O, counts rejections).

    Accepts the oslo message dict (``event_type``, ``payload``, ...), its v2
    envelope, or a Notification record. Pass the raw dict when you can: the
    ``metering`` payload is a list, which the Notification record cannot hold.
    """
    try:
        msg = _unwrap(message)
    except (Rejected, ValueError) as exc:
        reject(STAGE_NOTIFIER, "malformed", str(exc))
        return NotificationSamples(matched=False, rejected=1)
    event_type = str(msg.get("event_type") or "")
    payload = msg.get("payload")
    if event_type == POLLING_EVENT:
        items = payload.get("samples") if isinstance(payload, Mapping) else None
    elif event_type == METERING_EVENT or event_type.startswith(METERING_EVENT + "."):
        items = payload.get("samples") if isinstance(payload, Mapping) else payload
    else:
        return NotificationSamples(matched=False)
    if not isinstance(items, list):
        reject(STAGE_NOTIFIER, "malformed", f"{event_type} payload holds no list of samples")
        return NotificationSamples(matched=True, rejected=1)
    good, refused = accept_messages(items, secret, STAGE_NOTIFIER)
    return NotificationSamples(matched=True, samples=good, rejected=len(refused))


def secret_of(settings: Settings) -> str | None:
    s = settings.sources.ceilometer.telemetry_secret
    return s.get_secret_value() if s is not None else None


async def _publish_until_done(bus: Bus, fmt: str, samples: list[Sample], stage: str) -> None:
    """Publish, retrying while the bus is down: UDP has no one to tell, so we wait."""
    delay = 0.5
    while True:
        try:
            await publish_records(bus, samples, fmt)
            RECORDS_OUT.labels(stage=stage).inc(len(samples))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s: bus refused %d samples (%s); retrying in %.1fs", stage, len(samples), exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, source: CeilometerUdpSource) -> None:
        self.source = source

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.source.received(data, addr)


class CeilometerUdpSource(Component):
    """Listens for Ceilometer's udp:// publisher: one msgpack sample per datagram."""

    name = STAGE_UDP

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self.host, self.port = split_hostport(runtime.settings.sources.ceilometer.udp)
        self.secret = secret_of(runtime.settings)
        self.queue: asyncio.Queue[Sample] = asyncio.Queue(QUEUE_SIZE)
        self.transport: asyncio.DatagramTransport | None = None
        self.accepted = 0
        self.refused = 0
        self.drops: DropWatch | None = None
        self.refusals = Refusals(runtime.bus, self.name)
        #: When datagrams were last lost (kernel buffer or our queue full): /healthz reports it for a minute.
        self.lost_at: float | None = None
        rate = runtime.settings.sources.ceilometer.rate_per_peer
        self.rate = PeerRateLimit(rate, 10 * rate) if rate else None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(self.host, self.port)
        )
        sock = self.transport.get_extra_info("socket")
        with contextlib.suppress(OSError):  # a bigger buffer absorbs bursts; the kernel may cap it (rmem_max)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.drops = DropWatch(self.name, sock)
        self.port = self.transport.get_extra_info("sockname")[1]
        self.spawn(self._forward, "publish")
        self.spawn(self._watch_drops, "kernel-drops")
        self.spawn(self.refusals.run, "refusals")
        log.info("listening for Ceilometer's udp:// publisher on %s:%d%s", self.host, self.port,
                 " (signatures required)" if self.secret else "")

    def received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """One datagram; never raises, whatever arrived."""
        if self.rate is not None and not self.rate.allow(addr[0], time.monotonic()):
            self.refused += 1
            RECORDS_IN.labels(stage=self.name).inc()
            RECORDS_REJECTED.labels(stage=self.name, reason="rate_limited").inc()  # counted, not logged: a flood
            return
        try:
            raw = msgpack.unpackb(data, raw=False)
        except Exception as exc:  # msgpack raises several types on garbage, RecursionError on deep nesting
            self.refused += 1
            RECORDS_IN.labels(stage=self.name).inc()
            reject(self.name, "malformed", f"not msgpack ({type(exc).__name__}) from {addr[0]}")
            self.refusals.refuse("malformed", f"not msgpack ({type(exc).__name__}) from {addr[0]}", data)
            return
        good, refused = accept_messages([raw], self.secret, self.name)
        self.refused += len(refused)
        for reason, message, _ in refused:
            self.refusals.refuse(reason, f"{message} (from {addr[0]})", data)
        for s in good:
            try:
                self.queue.put_nowait(s)
                self.accepted += 1
            except asyncio.QueueFull:
                self.refused += 1
                self.lost_at = time.monotonic()
                reject(self.name, "overload", "the bus is not keeping up; datagram dropped", _describe(raw))

    async def _watch_drops(self) -> None:
        assert self.drops is not None
        while True:
            await asyncio.sleep(DROPS_EVERY)
            new = self.drops.poll(time.monotonic())
            if new:
                self.lost_at = time.monotonic()
                log.warning("%s: the kernel dropped %d datagrams (receive buffer full)", self.name, new)

    def problem(self) -> str | None:
        if self.lost_at is not None and time.monotonic() - self.lost_at < LOSS_REPORTED_FOR:
            kernel = self.drops.total if self.drops else 0
            return (f"dropping datagrams: {kernel} dropped by the kernel (receive buffer full), "
                    f"{self.refused} refused in all (see telemetry_stage_records_rejected_total)")
        return None

    async def _forward(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            await _publish_until_done(self.runtime.bus, self.runtime.settings.bus.format, batch, self.name)

    async def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()
        # Give what already arrived a moment to reach the bus before the tasks go.
        for _ in range(20):
            if self.queue.empty():
                break
            await asyncio.sleep(0.05)
        await self.cancel_tasks()

    def details(self) -> dict[str, Any]:
        return {"listen": f"{self.host}:{self.port}/udp", "accepted": self.accepted, "rejected": self.refused,
                "kernel_drops": self.drops.total if self.drops else 0}


class BusUnavailable(Exception):
    """The bus refused the samples; the publisher should retry later."""


class CeilometerHttpInput:
    """Ceilometer's http:// publisher (``POST /v1/ceilometer/samples``): the API's route calls ``receive``."""

    def __init__(self, runtime: Runtime) -> None:
        self.bus = runtime.bus
        self.fmt = runtime.settings.bus.format
        self.secret = secret_of(runtime.settings)
        self.refusals = Refusals(runtime.bus, STAGE_HTTP)

    async def receive(self, body: bytes, trusted: bool) -> tuple[int, int]:
        """(accepted, rejected) of one POST body; ValueError when it is not JSON, BusUnavailable when
        the bus refused the batch (nothing of it was taken)."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            reject(STAGE_HTTP, "malformed", f"body is not JSON: {exc}")
            raise ValueError(f"the body is not JSON: {exc}") from None
        items = data if isinstance(data, list) else [data]
        good, refused = accept_messages(items, self.secret, STAGE_HTTP, trusted)
        await self.refusals.keep([(reason, message, _as_bytes(item)) for reason, message, item in refused])
        if good:
            try:
                await publish_records(self.bus, good, self.fmt, durable=True)
            except Exception as exc:
                log.error("%s: bus refused %d samples: %s", STAGE_HTTP, len(good), exc)
                raise BusUnavailable(str(exc)) from None
            RECORDS_OUT.labels(stage=STAGE_HTTP).inc(len(good))
        return len(good), len(refused)
