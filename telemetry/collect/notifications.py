"""The OpenStack notification listener: the cloud's RabbitMQ -> Notification records and samples on our bus.

OpenStack services publish through oslo.messaging to topic exchanges named
after their ``control_exchange`` (``nova``, ``cinder``, ``neutron``...) with
routing keys ``<topic>.<priority>``; oslo itself declares a queue of that name
(``notifications.info``) which Ceilometer's agent consumes. We never read
that queue: we declare our own durable queues (``telemetry-notifications.info``)
bound to the same exchanges, so the broker hands both of us a copy.

Exchanges are used as they exist (oslo declares them non-durable unless
``amqp_durable_queues`` is set, and a declare with other arguments would fail
with PRECONDITION_FAILED); only a missing one is created, with the configured
durability, so our bindings exist before the first service publishes.

Delivery is at-least-once: a message is acked on the cloud broker only after
``publish_records`` to our bus returned. Redelivered notifications keep their
``message_id`` and their samples get ids derived from it, so the stores
dedup them. A malformed message is counted in
``telemetry_stage_records_rejected_total{stage="source.notifications"}``,
published raw to our ``dead_letter`` topic with its reason, and acked, so it
never loops; the good messages beside it go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

import kombu

from telemetry.bus.amqp_link import AmqpLink, kombu_connection
from telemetry.bus.base import Delivery
from telemetry.bus.records import publish_records
from telemetry.collect.ceilometer import METERING_EVENT, POLLING_EVENT, samples_from_notification
from telemetry.collect.meters import MeterMapping
from telemetry.collect.oslo_envelope import Malformed, document, to_notification, unpack
from telemetry.component import Component
from telemetry.config.base import redact_url
from telemetry.content import content_path
from telemetry.metrics import RECORDS_IN, RECORDS_OUT, RECORDS_REJECTED
from telemetry.models import Record
from telemetry.stage import dead_letter
from telemetry.runtime import Runtime

log = logging.getLogger(__name__)

STAGE = "source.notifications"
FETCH_TIMEOUT = 1.0
START_WAIT = 2.0  # an unreachable cloud broker must not hold up the daemon's start


def is_ceilometer_metering(event_type: str) -> bool:
    """Ceilometer's own sample-carrying notifications (polling agent, notifier publisher)."""
    return event_type == POLLING_EVENT or event_type == METERING_EVENT or event_type.startswith(METERING_EVENT + ".")


def meter_files(configured: list[str] | None) -> list[Path]:
    return [content_path("collectors") / "meters.yaml"] if configured is None else [Path(p) for p in configured]


class NotificationConverter:
    """Pure conversion of one AMQP body into records: no I/O, so tests and benchmarks call it directly."""

    def __init__(self, mapping: MeterMapping, secret: str | None, max_bytes: int) -> None:
        self.mapping = mapping
        self.secret = secret
        self.max_bytes = max_bytes

    def convert(self, body: bytes) -> list[Record]:
        """The Notification and its samples; raises :class:`Malformed` for bad input."""
        msg = unpack(body, self.max_bytes)
        if is_ceilometer_metering(msg["event_type"]):
            # Ceilometer's own samples: verified and built by the one function that knows them.
            return list(samples_from_notification(msg, self.secret).samples)
        records: list[Record] = [to_notification(msg)]
        samples, problems = self.mapping.samples(document(msg))
        for p in problems:
            RECORDS_REJECTED.labels(stage=STAGE, reason="meter").inc()
            log.warning("%s: no sample: %s", STAGE, p)
        records.extend(samples)
        return records


class NotificationListener(Component):
    """Consumes notifications from the cloud's RabbitMQ in a kombu thread and ships them to our bus."""

    name = STAGE

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self.cfg = cfg = runtime.settings.sources.notifications
        secret = runtime.settings.sources.ceilometer.telemetry_secret
        mapping = MeterMapping.load(meter_files(cfg.meters))
        self.converter = NotificationConverter(mapping, secret.get_secret_value() if secret else None,
                                               cfg.max_message_bytes)
        self.link = AmqpLink("notifications", lambda: kombu_connection(cfg.url, cfg.tls), self._on_channel,
                             redact_url(cfg.url), runtime.settings.bus.reconnect_max_backoff, label="notifications")
        self._buffer: deque[Delivery] = deque()
        self._stopping = asyncio.Event()
        self.accepted = 0
        self.rejected = 0
        self.samples = 0

    # -- broker side (the link's thread) --------------------------------------------------------

    def queues(self) -> list[tuple[str, str]]:
        """(queue name, routing key) pairs: one queue of ours per topic and priority."""
        keys = [f"{t}.{p}" for t in self.cfg.topics for p in self.cfg.priorities]
        return [(f"{self.cfg.queue_prefix}{k}", k) for k in keys]

    def _ensure_exchange(self, conn: kombu.Connection, name: str) -> None:
        """Use the exchange as it exists; create it only when missing.

        A passive declare of a missing exchange closes its channel (404), so it
        runs on a throwaway channel. If a service creates it in between, ours
        may disagree on durability (406): it exists, which is all we need.
        """
        for passive in (True, False):
            channel = conn.channel()
            try:
                channel.exchange_declare(exchange=name, type="topic", passive=passive,
                                         durable=self.cfg.exchange_durable, auto_delete=False)
                return
            except conn.channel_errors as exc:
                if getattr(exc, "code", None) not in (404, 406):
                    raise
                if not passive and exc.code == 406:
                    return
            finally:
                try:
                    channel.close()
                except Exception:  # the broker already closed it
                    pass

    def _on_channel(self, channel: Any) -> None:
        assert self.link.conn is not None
        self._buffer.clear()  # deliveries of a dead channel come back from the broker
        for exchange in self.cfg.exchanges:
            self._ensure_exchange(self.link.conn, exchange)
        channel.basic_qos(0, self.cfg.prefetch, False)
        for queue, key in self.queues():
            channel.queue_declare(queue=queue, durable=True, auto_delete=False)
            for exchange in self.cfg.exchanges:
                channel.queue_bind(queue=queue, exchange=exchange, routing_key=key)
            channel.basic_consume(queue=queue, callback=self._on_message, no_ack=False)

    def _on_message(self, message: Any) -> None:
        info = message.delivery_info
        body = message.body
        self._buffer.append(Delivery(
            topic=f"{info.get('exchange', '')}/{info['routing_key']}",
            value=body.encode() if isinstance(body, str) else bytes(body),
            redelivered=bool(info.get("redelivered")),
            token=(self.link.generation, info["delivery_tag"]),
        ))

    def _fetch_sync(self, max_records: int, timeout: float) -> list[Delivery]:
        if not self.link.drain(self._buffer, max_records, timeout):
            return []
        out: list[Delivery] = []
        while self._buffer and len(out) < max_records:
            out.append(self._buffer.popleft())
        return out

    # -- asyncio side ---------------------------------------------------------------------------

    async def start(self) -> None:
        # Declares and binds now, so nothing published after start-up is missed; an
        # unreachable broker is reported here and retried by the loop.
        try:
            await self.link.run(self.link.ensure, time.monotonic() + START_WAIT)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("%s: %s; retrying in the background", STAGE, exc)
        self.spawn(self._run, "consume")
        log.info("listening for OpenStack notifications on %s (exchanges %s; queues %s)",
                 self.link.describe, ",".join(self.cfg.exchanges), ",".join(q for q, _ in self.queues()))

    async def _run(self) -> None:
        while not self._stopping.is_set():
            batch = await self.link.run(self._fetch_sync, self.cfg.prefetch, FETCH_TIMEOUT)
            if not batch:
                continue
            RECORDS_IN.labels(stage=STAGE).inc(len(batch))
            records: list[Record] = []
            bad: list[tuple[Delivery, str]] = []
            for d in batch:
                try:
                    records.extend(self.converter.convert(d.value))
                except Malformed as exc:
                    log.info("%s: %s", STAGE, exc)  # dead_letter() logs the reason
                    bad.append((d, exc.reason))
                except Exception as exc:  # a message we cannot handle must not be redelivered forever
                    log.exception("%s: could not convert a message from %s", STAGE, d.topic)
                    bad.append((d, f"unconvertible:{type(exc).__name__}"))
            if not await self._ship(records, bad):
                return  # stopping while our bus is down: unacked, the cloud broker keeps them
            # Only now: what was acked is on our bus (at-least-once).
            await self.link.run(self.link.settle, [d.token for d in batch], lambda ch, tag: ch.basic_ack(tag))
            self.rejected += len(bad)
            self.accepted += len(batch) - len(bad)

    async def _ship(self, records: list[Record], bad: list[tuple[Delivery, str]]) -> bool:
        """Publish until our bus takes the batch (True); meanwhile the cloud broker keeps it unacked."""
        delay = 0.5
        while True:
            try:
                if records:
                    await publish_records(self.runtime.bus, records, self.runtime.settings.bus.format, durable=True)
                    RECORDS_OUT.labels(stage=STAGE).inc(len(records))
                    self.samples += sum(1 for r in records if r.topic == "samples")
                    records = []
                if bad:
                    await (await dead_letter(self.runtime.bus, STAGE, bad))
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping.is_set():
                    return False
                log.warning("%s: our bus refused the batch (%s); retrying in %.1fs", STAGE, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        # Let the batch in hand reach our bus and be acked, then stop; cancel if that takes too long.
        self._stopping.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=FETCH_TIMEOUT + 0.5)
        await self.cancel_tasks()
        await self.link.run(self.link.close)  # unacked notifications go back to the cloud's queue
        self.link.shutdown()

    def details(self) -> dict[str, Any]:
        return {"broker": self.link.describe, "accepted": self.accepted, "rejected": self.rejected,
                "samples": self.samples, "meter_definitions": len(self.converter.mapping.definitions)}
