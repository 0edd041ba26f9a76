"""Ceilometer's message signatures (HMAC-SHA256 with ``telemetry_secret``).

A sample signed by a real Ceilometer must verify here, so this follows
``ceilometer/publisher/utils.py`` (ceilometer 27.0.0) to the byte: the message
is flattened into ``name:sub`` key pairs sorted by key at each level (lists are
rendered after Ceilometer's ``decode_unicode``, which turns their strings into
``bytes``), each key and ``str(value)`` is fed to the HMAC as UTF-8, and the
``message_signature`` pair itself is skipped. Verification must run on the
dict exactly as it came off the wire: any normalisation (timestamps parsed,
ints turned into floats) changes the signed text.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["compute_signature", "recursive_keypairs", "verify_signature"]

SIGNATURE_FIELD = "message_signature"


def _decode_unicode(value: Any) -> Any:
    """Ceilometer's ``decode_unicode``: str -> bytes, bytes -> str, recursively.

    It matters for lists only: ``str(['a'])`` and ``str([b'a'])`` differ, and
    Ceilometer signs the latter.
    """
    if isinstance(value, Mapping):
        return {_decode_unicode(k): _decode_unicode(v) for k, v in sorted(value.items())}
    if isinstance(value, (tuple, list)):
        return [_decode_unicode(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def recursive_keypairs(d: Mapping[str, Any], separator: str = ":") -> Iterator[tuple[str, Any]]:
    """Flatten nested dicts into sorted ``(a:b:c, value)`` pairs, as Ceilometer does."""
    for name, value in sorted(d.items()):
        if isinstance(value, Mapping):
            for subname, subvalue in recursive_keypairs(value, separator):
                yield f"{name}{separator}{subname}", subvalue
        elif isinstance(value, (tuple, list)):
            yield name, _decode_unicode(value)
        else:
            yield name, value


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def compute_signature(message: Mapping[str, Any], secret: str | bytes | None) -> str:
    """The hex HMAC-SHA256 of ``message`` (its own signature excluded); '' without a secret."""
    if not secret:
        return ""
    digest = hmac.new(_secret_bytes(secret), b"", hashlib.sha256)
    for name, value in recursive_keypairs(message):
        if name == SIGNATURE_FIELD:
            continue  # the signature was not part of the message it signs
        digest.update(str(name).encode("utf-8"))
        digest.update(str(value).encode("utf-8"))
    return digest.hexdigest()


def verify_signature(message: Mapping[str, Any], secret: str | bytes | None) -> bool:
    """True when ``message_signature`` matches; always True without a secret (as Ceilometer).

    Comparison is constant-time. A message whose keys cannot be sorted (mixed
    key types) or whose signature is not ASCII text cannot have been signed by
    Ceilometer and fails.
    """
    if not secret:
        return True
    presented = message.get(SIGNATURE_FIELD, "")
    if isinstance(presented, str):
        try:
            presented = presented.encode("ascii")
        except UnicodeEncodeError:
            return False
    if not isinstance(presented, bytes):
        return False
    try:
        expected = compute_signature(message, secret).encode("ascii")
    except TypeError:  # unsortable keys
        return False
    return hmac.compare_digest(expected, presented)
