"""One kombu connection confined to one thread, reconnected with backoff.

Shared by the RabbitMQ bus and the OpenStack notification listener: kombu
blocks, so each connection lives in a one-worker executor. The asyncio loop
only awaits futures and never stalls, and a connection is never touched by
two threads (py-amqp channels are not thread-safe).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import kombu

from telemetry.bus.base import BusError
from telemetry.bus.metrics import BUS_RECONNECTIONS
from telemetry.config.core import BusTLS

log = logging.getLogger(__name__)

T = TypeVar("T")


def kombu_connection(url: str, tls: BusTLS | None = None) -> kombu.Connection:
    """A kombu connection for ``amqp://`` or ``amqps://`` (TLS options from ``tls``)."""
    ssl_opts: Any = False
    if url.startswith("amqps://"):
        tls = tls or BusTLS()
        ssl_opts = {"cert_reqs": ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE}
        if tls.ca_file:
            ssl_opts["ca_certs"] = tls.ca_file
        if tls.cert_file:
            ssl_opts["certfile"] = tls.cert_file
        if tls.key_file:
            ssl_opts["keyfile"] = tls.key_file
    return kombu.Connection(url.replace("amqps://", "amqp://", 1), ssl=ssl_opts, connect_timeout=5, heartbeat=0)


class AmqpLink:
    """A connection and its channel, (re)opened on demand in the link's own thread.

    ``setup`` runs on every new channel (declares, qos, consumers), so a broker
    restart that forgot non-durable exchanges or bindings gets them back.
    ``generation`` grows with each reconnection: delivery tags of an older
    channel are meaningless on the new one.
    """

    def __init__(self, name: str, connect: Callable[[], kombu.Connection], setup: Callable[[Any], None],
                 describe: str, max_backoff: float = 10.0, label: str = "amqp") -> None:
        self.name = name
        self._connect = connect
        self._setup = setup
        self.describe = describe
        self.max_backoff = max_backoff
        self.label = label
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"amqp-{name}")
        self.conn: kombu.Connection | None = None
        self.channel: Any = None
        self.generation = 0
        self._backoff = 0.1
        self._ever_connected = False
        probe = connect()
        self.errors: tuple[type[BaseException], ...] = (
            *probe.connection_errors, *probe.channel_errors, OSError, socket.timeout,
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def ensure(self, deadline: float) -> Any:
        """The open channel; (re)connects with backoff until ``deadline`` (thread side)."""
        while self.channel is None:
            try:
                conn = self._connect()
                # One attempt: this loop has its own backoff (kombu's connect() sleeps 2 s and tries again).
                conn.ensure_connection(max_retries=0, reraise_as_library_errors=False)
                channel = conn.channel()
                self.conn = conn
                self.channel = channel
                # Before setup: deliveries can arrive while setup waits for a later declare's
                # reply, and they must carry this channel's generation to be ackable.
                self.generation += 1
                self._setup(channel)
            except self.errors as exc:
                self.drop()
                wait = min(self._backoff, max(0.0, deadline - time.monotonic()))
                if wait <= 0:
                    raise BusError(f"RabbitMQ at {self.describe} is unreachable: {exc}") from exc
                log.warning("amqp %s: broker unreachable (%s); retrying in %.1fs", self.name, exc, wait)
                time.sleep(wait)
                self._backoff = min(self._backoff * 2, self.max_backoff)
                continue
            self._backoff = 0.1
            if self._ever_connected:
                BUS_RECONNECTIONS.labels(bus=self.label).inc()
                log.info("amqp %s: reconnected to %s", self.name, self.describe)
            self._ever_connected = True
        return self.channel

    def drop(self) -> None:
        """Forget the connection after an error; the broker requeues what was unacked."""
        conn, self.conn, self.channel = self.conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: closing is best effort
                pass

    def close(self) -> None:
        if self.channel is not None:
            try:
                self.channel.close()
            except Exception:
                pass
        self.drop()

    def drain(self, buffer: deque[Any], max_records: int, timeout: float) -> bool:
        """Let the consumers' callbacks fill ``buffer`` (thread side).

        Waits up to ``timeout`` for the first message, then takes what is
        already there up to ``max_records``. False when the broker is
        unreachable or was lost: the buffer is cleared, since the broker
        requeues the unacked deliveries of a dead channel itself.
        """
        deadline = time.monotonic() + timeout
        try:
            self.ensure(deadline)
            assert self.conn is not None
            while not buffer and time.monotonic() < deadline:
                try:
                    self.conn.drain_events(timeout=max(0.001, deadline - time.monotonic()))
                except TimeoutError:
                    break
            while buffer and len(buffer) < max_records:
                try:
                    self.conn.drain_events(timeout=0.001)
                except TimeoutError:
                    break
        except BusError:
            return False
        except self.errors as exc:
            log.warning("amqp %s: lost the broker (%s); reconnecting", self.name, exc)
            self.drop()
            buffer.clear()
            return False
        return True

    def settle(self, tokens: list[tuple[int, int]], how: Callable[[Any, int], None]) -> None:
        """Ack/reject ``(generation, delivery_tag)`` pairs of the current channel (thread side).

        Tags of a channel that died are skipped: the broker already requeued them.
        """
        if self.channel is None:
            return
        try:
            for gen, tag in tokens:
                if gen == self.generation:
                    how(self.channel, tag)
        except self.errors as exc:
            log.warning("amqp %s: settling failed (%s); the broker will redeliver", self.name, exc)
            self.drop()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False)
