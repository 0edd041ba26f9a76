"""The ZBXD wire format every Zabbix component speaks (agent, sender, get, server, proxy).

A frame is ``"ZBXD"``, one flags byte, then two little-endian lengths: the
payload's length and a reserved field that holds the uncompressed length when
the payload is zlib-compressed. The lengths are 4 bytes each, or 8 each when the
large-packet flag is set (Zabbix's ``ZBX_TCP_LARGE``, used by proxies for big
history batches). Every length is checked against a limit *before* anything is
read or inflated, so a peer claiming a gigabyte costs nothing but a log line.

Zabbix agents also still accept a passive check as a bare line of text (the
pre-1.4 protocol); ``read_request`` allows that where a caller asks for it.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "FLAG_COMPRESS", "FLAG_LARGE", "FLAG_PROTOCOL", "MAGIC", "NOTSUPPORTED",
    "Frame", "FrameError", "decode", "encode", "parse_json", "read_frame", "read_request",
]

MAGIC = b"ZBXD"
FLAG_PROTOCOL = 0x01
FLAG_COMPRESS = 0x02
FLAG_LARGE = 0x04
_KNOWN_FLAGS = FLAG_PROTOCOL | FLAG_COMPRESS | FLAG_LARGE
_SMALL = struct.Struct("<II")
_BIG = struct.Struct("<QQ")
#: The answer a Zabbix agent gives for a key it cannot evaluate, followed by NUL and the reason.
NOTSUPPORTED = "ZBX_NOTSUPPORTED"
#: A 4-byte length cannot say more; bigger payloads need the large flag.
SMALL_LIMIT = 0xFFFFFFFF


class FrameError(ValueError):
    """A frame that is refused; ``reason`` is the metric label, the message says what was wrong."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Frame:
    payload: bytes
    flags: int
    size: int  # bytes the frame took on the wire


def encode(payload: bytes | str | dict[str, Any] | list[Any], *, compress: bool = False,
           large: bool = False) -> bytes:
    """A complete frame; dicts and lists are written as JSON."""
    if isinstance(payload, (dict, list)):
        data = orjson.dumps(payload)
    elif isinstance(payload, str):
        data = payload.encode()
    else:
        data = payload
    flags = FLAG_PROTOCOL
    reserved = 0
    if compress:
        reserved, data = len(data), zlib.compress(data)
        flags |= FLAG_COMPRESS
    if large or len(data) > SMALL_LIMIT or reserved > SMALL_LIMIT:
        flags |= FLAG_LARGE
        return MAGIC + bytes((flags,)) + _BIG.pack(len(data), reserved) + data
    return MAGIC + bytes((flags,)) + _SMALL.pack(len(data), reserved) + data


def header_size(flags: int) -> int:
    return 5 + (_BIG.size if flags & FLAG_LARGE else _SMALL.size)


def _check_header(head: bytes, max_bytes: int) -> tuple[int, int, int]:
    """``(flags, length, reserved)`` of a complete header, or FrameError saying why not."""
    if head[:4] != MAGIC:
        raise FrameError("bad_header", f"not a ZBXD frame: starts with {head[:4]!r}")
    flags = head[4]
    if not flags & FLAG_PROTOCOL or flags & ~_KNOWN_FLAGS:
        raise FrameError("bad_flags", f"unknown ZBXD flags 0x{flags:02x}")
    length, reserved = (_BIG if flags & FLAG_LARGE else _SMALL).unpack(head[5:header_size(flags)])
    if length > max_bytes:
        raise FrameError("too_large", f"frame claims {length} bytes, the limit is {max_bytes}")
    if flags & FLAG_COMPRESS:
        if reserved > max_bytes:
            raise FrameError("too_large", f"frame inflates to {reserved} bytes, the limit is {max_bytes}")
    elif reserved:
        # Zabbix writes 0 here for plain frames; anything else is a garbled header.
        raise FrameError("bad_header", f"reserved field is {reserved} in an uncompressed frame")
    return flags, length, reserved


def _body(flags: int, data: bytes, reserved: int) -> bytes:
    if not flags & FLAG_COMPRESS:
        return data
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, reserved + 1)  # one byte more than promised shows a lie
    except zlib.error as exc:
        raise FrameError("bad_compression", f"payload is not valid zlib data: {exc}") from None
    if len(out) != reserved or not inflater.eof:
        raise FrameError("bad_compression",
                         f"payload inflates to {'more than ' if len(out) > reserved else ''}{len(out)} bytes, "
                         f"the header says {reserved}")
    return out


def decode(buf: bytes, max_bytes: int) -> Frame | None:
    """The first frame in ``buf``; None while it is incomplete; FrameError when it is refused."""
    if len(buf) < 5:
        if MAGIC[: len(buf)] != buf[:4]:
            raise FrameError("bad_header", f"not a ZBXD frame: starts with {buf[:4]!r}")
        return None
    hsize = header_size(buf[4]) if buf[:4] == MAGIC else 13
    if len(buf) < hsize:
        if buf[:4] != MAGIC:
            raise FrameError("bad_header", f"not a ZBXD frame: starts with {buf[:4]!r}")
        _check_header(buf[:5] + bytes(hsize - 5), max_bytes)  # flags alone can already be wrong
        return None
    flags, length, reserved = _check_header(buf[:hsize], max_bytes)
    if len(buf) < hsize + length:
        return None
    return Frame(_body(flags, buf[hsize: hsize + length], reserved), flags, hsize + length)


async def read_frame(reader: asyncio.StreamReader, max_bytes: int, first: bytes = b"") -> Frame:
    """One frame from a stream (``first``: bytes already read from it).

    Raises FrameError for a refused frame and ``asyncio.IncompleteReadError``
    when the peer closes in the middle of one.
    """
    head = first + await reader.readexactly(5 - len(first))
    if head[:4] != MAGIC:
        raise FrameError("bad_header", f"not a ZBXD frame: starts with {head[:4]!r}")
    hsize = header_size(head[4])
    head += await reader.readexactly(hsize - 5)
    flags, length, reserved = _check_header(head, max_bytes)
    data = await reader.readexactly(length) if length else b""
    return Frame(_body(flags, data, reserved), flags, hsize + length)


async def read_request(reader: asyncio.StreamReader, max_bytes: int, allow_plain: bool) -> bytes:
    """A request's payload: a ZBXD frame, or (``allow_plain``) a bare text line as old agents took."""
    first = await reader.readexactly(4)
    if first == MAGIC or not allow_plain:
        return (await read_frame(reader, max_bytes, first)).payload
    rest = b""
    if b"\n" not in first:
        try:
            rest = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise FrameError("too_large", "plain-text request line is too long") from None
        except asyncio.IncompleteReadError as exc:  # a line closed by the peer's shutdown, as zabbix_get sends
            rest = exc.partial
    return (first + rest).split(b"\n", 1)[0].rstrip(b"\r")


def parse_json(payload: bytes) -> dict[str, Any]:
    """A request or response object; FrameError (reason ``bad_json``) when it is not one."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise FrameError("bad_json", f"payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FrameError("bad_json", f"payload is JSON but not an object: {type(doc).__name__}")
    return doc
