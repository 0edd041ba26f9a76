"""Syslog input: RFC 3164 and RFC 5424 over UDP and TCP, so rsyslog or syslog-ng can forward.

TCP framing follows RFC 6587: a frame starting with a digit is octet-counted
(``LEN SP MSG``), anything else is newline-terminated, decided per frame as
rsyslog's imtcp does. Each message becomes a RawLog whose ``lines`` hold the
message text; the header goes into the field names Logstash's syslog input
uses (``priority``, ``facility``, ``severity``, ``logsource``, ``program``,
``pid``, ``timestamp``), so parsers and dashboards written for it apply.

A message that cannot be parsed is still shipped, whole, tagged
``_syslogparsefailure`` (Logstash's tag): bad input is visible, never dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import Counter

from telemetry.collect import agent_metrics as m
from telemetry.bounds import PeerRateLimit
from telemetry.collect.batcher import Batcher
from telemetry.component import Component
from telemetry.config.base import split_hostport
from telemetry.config.sources import SyslogSource, SyslogTLS
from telemetry.metrics import REGISTRY
from telemetry.models import RawLog, derived_id
from telemetry.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["SyslogServer", "parse_syslog"]

_PRI = re.compile(rb"^<(\d{1,3})>")
_5424 = re.compile(
    r"^1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(?P<msg>.*)$", re.S,
)
_3164 = re.compile(
    r"^(?:(?P<ts>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}T\S+) )?"
    r"(?:(?P<host>[^\s:\[]+) )?(?P<tag>[^\s:\[]+)(?:\[(?P<pid>[^\]]*)\])?: ?(?P<msg>.*)$", re.S,
)
#: An octet count (RFC 6587 3.4.1) has at most this many digits; more is not a count.
MAX_COUNT_DIGITS = 10

REJECTED = Counter(
    "telemetry_agent_syslog_rejected", "Syslog frames or messages refused or repaired, by reason "
    "(bad_octet_count: read as a line instead; truncated: cut at max_message_bytes; incomplete: the "
    "connection closed mid-frame; rate_limited: over sources.syslog.rate_per_peer; "
    "no_header: shipped whole, tagged _syslogparsefailure; invalid_utf8)",
    ["reason"], registry=REGISTRY,
)


CONNECTIONS = Counter(
    "telemetry_agent_syslog_connections", "Syslog TCP connections, by what became of them (accepted; over_cap: "
    "closed at once, sources.syslog.max_connections were open; idle_timeout: closed after idle_timeout without "
    "a complete message)", ["result"], registry=REGISTRY,
)

_TAG_REASONS = {"_syslogparsefailure": "no_header", "invalid_utf8": "invalid_utf8"}


def _nil(v: str) -> str | None:
    return None if v == "-" else v


def parse_syslog(frame: bytes) -> dict[str, Any]:
    """Fields of one syslog message (either RFC); ``tags`` says what could not be parsed."""
    out: dict[str, Any] = {"tags": []}
    pm = _PRI.match(frame)
    if pm and int(pm.group(1)) <= 191:
        pri = int(pm.group(1))
        out.update(priority=pri, facility=pri >> 3, severity=pri & 7)
        frame = frame[pm.end():]
    else:
        out["tags"].append("_syslogparsefailure")
    text = frame.rstrip(b"\r\n").decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\ufffd" in text:
        out["tags"].append("invalid_utf8")
    if pm and (m5 := _5424.match(text)):
        msg = m5.group("msg")
        if msg.startswith(" "):  # rsyslog's %msg% keeps the space that followed the 3164 tag
            msg = msg[1:]
        out.update(
            timestamp=_nil(m5.group("ts")), logsource=_nil(m5.group("host")), program=_nil(m5.group("app")),
            pid=_nil(m5.group("procid")), msgid=_nil(m5.group("msgid")), structured_data=_nil(m5.group("sd")),
            message=msg[1:] if msg.startswith("\ufeff") else msg, rfc="5424",
        )
    elif pm and (m3 := _3164.match(text)):
        out.update(timestamp=m3.group("ts"), logsource=m3.group("host") if m3.group("ts") else None,
                   program=m3.group("tag"), pid=m3.group("pid"), message=m3.group("msg"), rfc="3164")
    else:
        out["message"] = text
        if "_syslogparsefailure" not in out["tags"]:
            out["tags"].append("_syslogparsefailure")
    return out


async def _line(reader: asyncio.StreamReader, head: bytes, limit: int) -> tuple[bytes, bool]:
    """A newline-terminated frame that starts with ``head``: (its bytes, cut?); the rest of an over-long line is skipped."""
    try:
        rest = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:  # an over-long line: keep its head, skip the rest unread
        rest = await reader.read(limit)
        while True:
            try:
                await reader.readuntil(b"\n")
                break
            except asyncio.LimitOverrunError as exc:
                await reader.readexactly(exc.consumed)
            except asyncio.IncompleteReadError:
                break
        return (head + rest)[:limit], True
    except asyncio.IncompleteReadError as exc:  # the last frame, closed without its newline
        rest = exc.partial
    frame = (head + rest).rstrip(b"\r\n")
    return frame[:limit], len(frame) > limit


async def frames(reader: asyncio.StreamReader, limit: int) -> AsyncIterator[tuple[bytes, bool]]:
    """The frames of one TCP connection, (bytes, cut?), octet-counted or newline-terminated, decided per frame.

    A frame that starts with a digit is octet-counted (``LEN SP MSG``, RFC 6587 3.4.1) when the
    digits are a count (at most ten, then a space); otherwise it is a line like any other
    (``12x 34``), counted as ``bad_octet_count`` and shipped: the connection and the frames after
    it go on. Frames are held to ``limit`` bytes; the rest of a longer one is skipped unread.
    """
    while True:
        first = await reader.read(1)
        if not first:
            return
        if not first.isdigit():
            if first in (b"\n", b"\r"):
                continue  # blank line between frames
            frame, cut = await _line(reader, first, limit)
            yield frame, cut
            continue
        head = first
        nxt = b""
        while len(head) <= MAX_COUNT_DIGITS:
            nxt = await reader.read(1)
            if not nxt.isdigit():
                break
            head += nxt
        if nxt == b" " and len(head) <= MAX_COUNT_DIGITS and int(head) > 0:
            size = int(head)
            keep = min(size, limit)
            try:
                frame = await reader.readexactly(keep)
                for left in range(size - keep, 0, -65536):  # never hold an over-long frame whole
                    await reader.readexactly(min(left, 65536))
            except asyncio.IncompleteReadError as exc:
                REJECTED.labels(reason="incomplete").inc()
                if exc.partial:
                    yield exc.partial[:limit], True
                return
            yield frame, keep < size
            continue
        REJECTED.labels(reason="bad_octet_count").inc()
        if not nxt:  # the connection closed right after the digits
            yield head, False
            return
        if nxt == b"\n":
            yield head, False
            continue
        frame, cut = await _line(reader, head + nxt, limit)
        yield frame, cut


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: SyslogServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.server.within_rate(addr[0]):
            return
        try:
            self.server.queue.put_nowait((data, addr[0]))
        except asyncio.QueueFull:  # UDP has no backpressure: count what the overload cost
            m.SYSLOG_DROPPED.inc()


class SyslogServer(Component):
    name = "source.syslog"

    def __init__(self, runtime: Runtime, batcher: Batcher) -> None:
        super().__init__()
        self.cfg: SyslogSource = runtime.settings.sources.syslog
        self.agent_host: str = runtime.settings.host
        self.batcher = batcher
        self.queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue(10_000)
        self.received = 0
        self._seq = itertools.count()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tls: asyncio.Server | None = None
        self.address = ""
        self.tls_address = ""
        rate = self.cfg.rate_per_peer
        self.rate = PeerRateLimit(rate, 10 * rate) if rate else None
        self.open = 0

    async def start(self) -> None:
        host, port = split_hostport(self.cfg.listen)
        loop = asyncio.get_running_loop()
        if self.cfg.tcp:
            self._tcp = await asyncio.start_server(self._client, host, port, limit=self.cfg.max_message_bytes + 64)
            port = self._tcp.sockets[0].getsockname()[1]  # port 0: UDP takes the same number
        if self.cfg.udp:
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(host, port))
            port = self._udp.get_extra_info("sockname")[1]
        self.address = f"{host}:{port}"
        if self.cfg.tls:
            self._tls = await self._start_tls(self.cfg.tls)
        self.spawn(self._drain_udp, "udp")

    async def _start_tls(self, cfg: SyslogTLS) -> asyncio.Server:
        """The RFC 5425 listener: the same framing and bounds as plain TCP, inside TLS."""
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        if cfg.client_ca_file:
            ctx.load_verify_locations(cfg.client_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        host, port = split_hostport(cfg.listen)
        server = await asyncio.start_server(self._client, host, port, ssl=ctx, limit=self.cfg.max_message_bytes + 64,
                                            ssl_handshake_timeout=min(30.0, self.cfg.idle_timeout))
        self.tls_address = f"{host}:{server.sockets[0].getsockname()[1]}"
        return server

    def within_rate(self, peer: str) -> bool:
        """False (and counted) for a message over ``rate_per_peer`` from this sender."""
        if self.rate is None or self.rate.allow(peer, time.monotonic()):
            return True
        REJECTED.labels(reason="rate_limited").inc()
        return False

    def record(self, frame: bytes, peer: str, cut: bool = False) -> RawLog:
        tags: list[str] = ["truncated"] if cut else []
        if len(frame) > self.cfg.max_message_bytes:
            frame, tags = frame[: self.cfg.max_message_bytes], ["truncated"]
        f = parse_syslog(frame)
        msg = f.pop("message")
        tags += f.pop("tags")
        if "truncated" in tags:
            REJECTED.labels(reason="truncated").inc()
        for t in tags:
            if t in _TAG_REASONS:
                REJECTED.labels(reason=_TAG_REASONS[t]).inc()
        host = f.get("logsource") or peer
        fields = dict(self.cfg.fields)
        program = f.get("program") or ""
        self.received += 1
        m.LINES_READ.labels(source="syslog").inc()
        m.BYTES_READ.labels(source="syslog").inc(len(frame))
        return RawLog(
            id=derived_id("syslog", self.agent_host, peer, time.time_ns(), next(self._seq)),
            host=host, path=f"syslog://{peer}/{program}", type=fields.pop("type", "syslog"),
            component=fields.pop("component", program), lines=[msg], tags=tags, peer=peer, **f, **fields,
        )

    async def _drain_udp(self) -> None:
        while True:
            data, peer = await self.queue.get()
            await self.batcher.add(self.record(data, peer))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One sender's frames; bounded in number of connections and in silence, so idle sockets cannot
        take every file descriptor the process has (the API then stops answering)."""
        peer = (writer.get_extra_info("peername") or ("?",))[0]
        if self.open >= self.cfg.max_connections:
            CONNECTIONS.labels(result="over_cap").inc()
            writer.close()
            return
        self.open += 1
        CONNECTIONS.labels(result="accepted").inc()
        it = frames(reader, self.cfg.max_message_bytes).__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.cfg.idle_timeout):  # waits for the sender only
                        frame, cut = await anext(it)
                except StopAsyncIteration:
                    break
                if frame and self.within_rate(peer):
                    await self.batcher.add(self.record(frame, peer, cut=cut))  # waits under backpressure
        except TimeoutError:
            CONNECTIONS.labels(result="idle_timeout").inc()
        except ConnectionError as exc:
            log.warning("syslog client %s: %s", peer, exc)
        finally:
            self.open -= 1
            writer.close()

    async def stop(self) -> None:
        for server in (self._tcp, self._tls):
            if server:
                server.close()
        if self._udp:
            self._udp.close()
        await self.cancel_tasks()

    def details(self) -> dict[str, Any]:
        tls = {"tls_listen": self.tls_address} if self.tls_address else {}
        return {"listen": self.address, **tls, "received": self.received, "open_connections": self.open}
