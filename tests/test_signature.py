"""Ceilometer's HMAC-SHA256 signatures: the shared signed samples and the real package agree."""

from __future__ import annotations

import copy
import json

import pytest
from ceilometer.publisher import utils as ceilometer_utils

from telemetry.meter.signature import compute_signature, verify_signature

SECRET = "s3cret"


@pytest.fixture(scope="module")
def signed(samples_dir) -> list[dict]:
    return json.loads((samples_dir / "ceilometer" / "cpu_util-signed-s3cret.json").read_text())


def test_every_shared_sample_verifies(signed):
    assert len(signed) == 4
    assert all(verify_signature(m, SECRET) for m in signed)
    assert all(verify_signature(m, SECRET.encode()) for m in signed)


def test_wrong_secret_fails(signed):
    assert not any(verify_signature(m, "s3cret2") for m in signed)


EDITS = [
    lambda m: m.__setitem__("counter_volume", m["counter_volume"] + 0.5),
    lambda m: m.__setitem__("counter_volume", int(m["counter_volume"]) if m["counter_volume"] % 1 else m["counter_volume"] + 1),
    lambda m: m.__setitem__("timestamp", m["timestamp"].replace("Z", "+00:00")),
    lambda m: m["resource_metadata"]["flavor"].__setitem__("vcpus", 2),
    lambda m: m["resource_metadata"].__setitem__("extra", "x"),
    lambda m: m.pop("monotonic_time"),
    lambda m: m.__setitem__("message_signature", m["message_signature"].upper()),
    lambda m: m.pop("message_signature"),
    lambda m: m.__setitem__("message_signature", "é" * 64),
]


@pytest.mark.parametrize("edit", range(len(EDITS)))
def test_any_edited_copy_fails(signed, edit):
    for original in signed:
        m = copy.deepcopy(original)
        EDITS[edit](m)
        assert not verify_signature(m, SECRET), f"edit {edit} of {original['message_id']} still verified"


MESSAGES = [
    {"a": 1, "b": 2.5, "c": None, "d": True},
    {"resource_metadata": {"tags": ["x", "é", 3], "nested": {"z": [{"k": "v", "a": 1}], "y": "ü"}}, "n": "name"},
    {"list": [], "empty": {}, "s": "", "big": 12345678901234567890, "f": 1e16},
    {"message_signature": "ignored", "counter_name": "cpu", "counter_volume": 0},
]


@pytest.mark.parametrize("message", MESSAGES)
def test_same_digest_as_real_ceilometer(message):
    for secret in ("s3cret", "ünïcode", b"bytes-secret"):
        ours = compute_signature(message, secret)
        assert ours == ceilometer_utils.compute_signature(message, secret)
        signed_msg = dict(message, message_signature=ours)
        assert verify_signature(signed_msg, secret)
        assert ceilometer_utils.verify_signature(signed_msg, secret)


def test_no_secret_means_no_check_as_in_ceilometer():
    assert compute_signature({"a": 1}, None) == ""
    assert verify_signature({"a": 1, "message_signature": "junk"}, None)
    assert verify_signature({"a": 1}, "")


def test_unsortable_keys_fail_instead_of_raising():
    assert not verify_signature({1: "a", "b": 2, "message_signature": "00"}, SECRET)
