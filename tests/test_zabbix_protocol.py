"""The ZBXD codec and the bounded listener: round trips, property tests, malformed frames on a live socket."""

from __future__ import annotations

import asyncio
import struct
import time
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.collect.checks.items import ItemCollector
from telemetry.collect.zabbix import metrics as zm
from telemetry.collect.zabbix.passive import PassiveListener
from telemetry.collect.zabbix.protocol import (
    FLAG_COMPRESS, FLAG_LARGE, FLAG_PROTOCOL, MAGIC, FrameError, decode, encode, parse_json, read_frame,
)
from telemetry.collect.zabbix.trapper import TrapperListener
from telemetry.config.zabbix import ZabbixSource

LIMIT = 1 << 20


# -- codec -------------------------------------------------------------------------
def test_encode_matches_zabbix_header_layout() -> None:
    frame = encode(b"agent.ping")
    assert frame[:4] == b"ZBXD" and frame[4] == FLAG_PROTOCOL
    assert struct.unpack("<II", frame[5:13]) == (10, 0)
    assert frame[13:] == b"agent.ping"
    big = encode(b"x", large=True)
    assert big[4] == FLAG_PROTOCOL | FLAG_LARGE and struct.unpack("<QQ", big[5:21]) == (1, 0)
    z = encode(b"a" * 1000, compress=True)
    assert z[4] == FLAG_PROTOCOL | FLAG_COMPRESS
    length, reserved = struct.unpack("<II", z[5:13])
    assert reserved == 1000 and zlib.decompress(z[13:]) == b"a" * 1000 and length == len(z) - 13


def test_decode_reads_what_zabbix_utils_writes() -> None:
    from zabbix_utils.common import ZabbixProtocol

    for compression in (False, True):
        packet = ZabbixProtocol.create_packet({"request": "sender data", "data": []}, _Log(), compression)
        frame = decode(packet, LIMIT)
        assert frame is not None and parse_json(frame.payload) == {"request": "sender data", "data": []}


class _Log:
    def debug(self, *a: object) -> None: ...
    def warning(self, *a: object) -> None: ...
    def error(self, *a: object) -> None: ...


@given(payload=st.binary(max_size=4096), compress=st.booleans(), large=st.booleans())
def test_round_trip(payload: bytes, compress: bool, large: bool) -> None:
    frame = encode(payload, compress=compress, large=large)
    got = decode(frame, LIMIT)
    assert got is not None and got.payload == payload and got.size == len(frame)
    for cut in range(len(frame)):  # every prefix is "incomplete", never an error or a wrong frame
        assert decode(frame[:cut], LIMIT) is None


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        decode(data, LIMIT)
    except FrameError as exc:
        assert exc.reason in {"bad_header", "bad_flags", "too_large", "bad_compression"}


@given(flags=st.integers(0, 255), length=st.integers(0, 2**32 - 1), reserved=st.integers(0, 2**32 - 1),
       body=st.binary(max_size=64))
def test_any_header_is_accepted_or_refused_with_a_reason(flags: int, length: int, reserved: int, body: bytes) -> None:
    head = MAGIC + bytes((flags,)) + (struct.pack("<QQ", length, reserved) if flags & FLAG_LARGE
                                      else struct.pack("<II", length, reserved))
    try:
        frame = decode(head + body, LIMIT)
    except FrameError as exc:
        assert exc.reason in {"bad_flags", "too_large", "bad_header", "bad_compression"}
        return
    assert frame is None or len(frame.payload) <= LIMIT


def test_refusals_name_the_problem() -> None:
    with pytest.raises(FrameError, match="not a ZBXD frame") as e:
        decode(b"HTTP/1.1 200 OK\r\n", LIMIT)
    assert e.value.reason == "bad_header"
    with pytest.raises(FrameError, match="claims 1073741824 bytes") as e:
        decode(MAGIC + b"\x01" + struct.pack("<II", 1 << 30, 0), LIMIT)
    assert e.value.reason == "too_large"
    with pytest.raises(FrameError, match="unknown ZBXD flags 0x09"):
        decode(MAGIC + b"\x09" + struct.pack("<II", 1, 0) + b"x", LIMIT)
    with pytest.raises(FrameError, match="not valid zlib"):
        decode(MAGIC + b"\x03" + struct.pack("<II", 4, 10) + b"junk", LIMIT)
    bomb = zlib.compress(b"\0" * (LIMIT * 4))
    with pytest.raises(FrameError, match="inflates to more than"):  # reserved lies about the size
        decode(MAGIC + b"\x03" + struct.pack("<II", len(bomb), 100) + bomb, LIMIT)
    with pytest.raises(FrameError, match="not JSON"):
        parse_json(b'{"request": "sender data", ')
    with pytest.raises(FrameError, match="not an object"):
        parse_json(b"[1, 2]")


async def test_read_frame_from_a_stream() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(encode({"a": 1}, compress=True) + encode("second"))
    reader.feed_eof()
    assert parse_json((await read_frame(reader, LIMIT)).payload) == {"a": 1}
    assert (await read_frame(reader, LIMIT)).payload == b"second"
    with pytest.raises(asyncio.IncompleteReadError):
        await read_frame(reader, LIMIT)


# -- malformed frames against live listeners ------------------------------------------
class _NullBus:
    """Keeps what is published, as a broker would: bytes, durable at once."""

    in_process = False

    def __init__(self) -> None:
        self.messages: list[object] = []

    async def publish(self, topic: str, msgs: list[object]) -> object:
        from telemetry.bus import DURABLE

        self.messages += msgs
        return DURABLE


def _cfg(**over: object) -> ZabbixSource:
    return ZabbixSource.model_validate({"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0", "idle_timeout": "1s",
                                        "max_frame_bytes": 65536, "max_connections": 4, **over})


def _rejected(listener: str, reason: str) -> float:
    return zm.FRAMES_REJECTED.labels(listener=listener, reason=reason)._value.get()


async def _send_raw(address: str, data: bytes, close_write: bool = True, wait: float = 3.0) -> bytes:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        if close_write:
            writer.write_eof()
    except OSError:  # reset before our write or shutdown (ENOTCONN): refused at once
        return b""
    try:
        return await asyncio.wait_for(reader.read(), wait)
    except ConnectionResetError:  # closed with our bytes unread: refused, as expected
        return b""
    finally:
        writer.close()


async def _trapper_answers(address: str) -> None:
    reply = await _send_raw(address, encode({"request": "sender data",
                                             "data": [{"host": "h", "key": "k", "value": "1"}]}))
    frame = decode(reply, LIMIT)
    assert frame is not None and parse_json(frame.payload)["response"] == "success"


@pytest.mark.parametrize("raw,reason", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad_header"),
    (MAGIC + b"\x01" + struct.pack("<II", 1 << 30, 0), "too_large"),            # the 1 GB claim
    (MAGIC + b"\x05" + struct.pack("<QQ", 1 << 40, 0), "too_large"),            # a large-packet claim
    (MAGIC + b"\x01" + struct.pack("<II", 100, 0) + b"{}", "truncated"),        # shorter than its length
    (MAGIC + b"\x03" + struct.pack("<II", 5, 50) + b"abcde", "bad_compression"),
    (MAGIC + b"\x41" + struct.pack("<II", 2, 0) + b"{}", "bad_flags"),
    (encode(b'{"request": "sender data", "data": [{"host": '), "bad_json"),
    (encode(b'{"request": "reboot"}'), "bad_request"),
])
async def test_trapper_refuses_malformed_frames_and_keeps_serving(raw: bytes, reason: str) -> None:
    bus = _NullBus()
    t = TrapperListener(_cfg(), bus)  # type: ignore[arg-type]
    await t.start()
    try:
        before = _rejected(t.name, reason)
        t0 = time.monotonic()
        await _send_raw(t.address, raw)
        assert time.monotonic() - t0 < 2.0, "a bad frame must not hold the connection"
        assert _rejected(t.name, reason) == before + 1
        await _trapper_answers(t.address)  # the listener is not stalled
        assert len(bus.messages) == 1
    finally:
        await t.stop()


async def test_idle_peer_is_dropped_and_cap_is_enforced() -> None:
    t = TrapperListener(_cfg(max_connections=2), _NullBus())  # type: ignore[arg-type]
    await t.start()
    host, port = t.address.rsplit(":", 1)
    try:
        before = _rejected(t.name, "idle_timeout")
        over = zm.CONNECTIONS.labels(listener=t.name, result="over_cap")._value.get()
        idle = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
        for _, w in idle:
            w.write(b"ZBX")  # half a header, then silence
            await w.drain()
        await asyncio.sleep(0.2)
        r3, w3 = await asyncio.open_connection(host, int(port))
        assert await asyncio.wait_for(r3.read(), 2) == b""  # over the cap: closed at once
        w3.close()
        assert zm.CONNECTIONS.labels(listener=t.name, result="over_cap")._value.get() == over + 1
        for r, _ in idle:  # the idle timeout (1 s) closes the slow ones
            assert await asyncio.wait_for(r.read(), 3) == b""
        assert _rejected(t.name, "idle_timeout") == before + 2
        await _trapper_answers(t.address)
    finally:
        await t.stop()


async def test_passive_listener_refuses_oversized_plain_line() -> None:
    p = PassiveListener(_cfg(), ItemCollector("h"))
    await p.start()
    try:
        before = _rejected(p.name, "too_large")
        await _send_raw(p.address, b"a" * (200 << 10) + b"\n")
        assert _rejected(p.name, "too_large") == before + 1
        reply = decode(await _send_raw(p.address, b"agent.ping\n"), LIMIT)  # old plain-text protocol
        assert reply is not None and reply.payload == b"1"
    finally:
        await p.stop()


def test_allowed_peers_refuse_others() -> None:
    async def go() -> None:
        p = PassiveListener(_cfg(allowed_peers=["10.0.0.0/8"]), ItemCollector("h"))
        await p.start()
        try:
            assert await _send_raw(p.address, encode("agent.ping")) == b""
            assert zm.CONNECTIONS.labels(listener=p.name, result="not_allowed")._value.get() >= 1
        finally:
            await p.stop()

    asyncio.run(go())
    with pytest.raises(ValueError):
        _cfg(allowed_peers=["not-an-address"])



async def test_passive_answers_zabbix7_json_requests() -> None:
    p = PassiveListener(_cfg(), ItemCollector("h"))
    await p.start()
    try:
        req = {"request": "passive checks", "data": [{"key": "agent.ping", "timeout": 3}, {"key": "no.such"}]}
        reply = decode(await _send_raw(p.address, encode(req)), LIMIT)
        assert reply is not None
        assert parse_json(reply.payload)["data"] == [{"value": "1"}, {"error": "Unsupported item key."}]
        before = _rejected(p.name, "bad_request")
        assert await _send_raw(p.address, encode(b'{"request": "passive checks"}')) == b""
        assert _rejected(p.name, "bad_request") == before + 1
    finally:
        await p.stop()
