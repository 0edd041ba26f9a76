"""Compressed chunks of one series' raw samples (the embedded backend's sealed data).

A row per sample costs SQLite ~50 bytes plus B-tree slack; a time series
database stores a few bytes per sample by packing a series' samples into a
chunk and compressing the columns separately. Pure Python has no bit-level
Gorilla coder fast enough, so the columns are transformed into something
zlib compresses well instead:

- timestamps as delta-of-delta (a regular scrape interval becomes zeros);
- volumes as decimal mantissas when every value of the chunk has at most six
  decimals and round-trips exactly (``v == m / 10**k``), as VictoriaMetrics
  does; otherwise the raw doubles XOR their predecessor (Gorilla's idea);
- the receive time as deltas (a batch shares one);
- each 8-byte column byte-shuffled (all first bytes, then all second bytes,
  ...), so the constant high bytes become long runs;
- message ids only where they cannot be derived from the sample itself
  (``telemetry.models.Sample._fill_id``): a list of (index, id) exceptions.

Decoding is exact: every float comes back bit for bit.
"""

from __future__ import annotations

import math
import struct
import zlib
from array import array
from itertools import accumulate

import orjson

HEADER = struct.Struct("<BbI")  # format version, volume coding (see _VOL_*), sample count
#: zlib level: after the transforms above, level 1 compresses a regular series within ~10% of level 6 at a
#: fifth of the time (sealing an hour is on the ingest path). Any level decodes.
LEVEL = 1
_VOL_XOR = -1  # raw doubles XOR previous; k >= 0: decimal mantissas with k decimals
_MAX_MANTISSA = 2**53


def _shuffle(data: bytes, width: int = 8) -> bytes:
    return b"".join(data[i::width] for i in range(width))


def _unshuffle(data: bytes, n: int, width: int = 8) -> bytes:
    out = bytearray(n * width)
    for i in range(width):
        out[i::width] = data[i * n:(i + 1) * n]
    return bytes(out)


def _deltas(values: list[int]) -> list[int]:
    return values[:1] + [b - a for a, b in zip(values, values[1:])]


def _decimals(values: list[float]) -> int:
    """The fewest decimals (0..6) that represent every value exactly, or -1."""
    for k in range(7):
        p = 10.0**k
        try:
            for v in values:
                m = round(v * p)
                if m / p != v or abs(m) >= _MAX_MANTISSA or (v == 0 and math.copysign(1.0, v) < 0):
                    break
            else:
                return k
        except (ValueError, OverflowError):  # nan, inf
            return _VOL_XOR
    return _VOL_XOR


def encode(ts: list[int], volumes: list[float], recorded: list[int], msgids: list[str | None]) -> bytes:
    """One chunk from parallel columns sorted by time."""
    n = len(ts)
    k = _decimals(volumes)
    if k >= 0:
        p = 10.0**k
        vol = array("q", _deltas([round(v * p) for v in volumes])).tobytes()
    else:
        bits = array("q", array("d", volumes).tobytes())
        vol = array("q", bits[:1].tolist() + [a ^ b for a, b in zip(bits, bits[1:])]).tobytes()
    exceptions = [(i, m) for i, m in enumerate(msgids) if m is not None]
    body = (_shuffle(array("q", _deltas(_deltas(ts))).tobytes()) + _shuffle(vol)
            + _shuffle(array("q", _deltas(recorded)).tobytes()) + (orjson.dumps(exceptions) if exceptions else b""))
    return HEADER.pack(1, k, n) + zlib.compress(body, LEVEL)


def decode(blob: bytes) -> tuple[list[int], list[float], list[int], list[str | None]]:
    """(timestamps, volumes, recorded, message ids or None where derivable)."""
    _, k, n = HEADER.unpack_from(blob)
    body = zlib.decompress(memoryview(blob)[HEADER.size:])
    w = 8 * n

    def column(i: int) -> list[int]:
        return array("q", _unshuffle(body[i * w:(i + 1) * w], n)).tolist()

    ts = list(accumulate(accumulate(column(0))))
    raw = column(1)
    if k >= 0:
        p = 10.0**k
        volumes = [m / p for m in accumulate(raw)]
    else:
        bits = list(accumulate(raw, lambda a, b: a ^ b))
        volumes = array("d", array("q", bits).tobytes()).tolist()
    recorded = list(accumulate(column(2)))
    msgids: list[str | None] = [None] * n
    if len(body) > 3 * w:
        for i, m in orjson.loads(body[3 * w:]):
            msgids[i] = m
    return ts, volumes, recorded, msgids
