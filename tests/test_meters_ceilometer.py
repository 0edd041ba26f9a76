"""Ceilometer's own meters.yaml loads unchanged and means what it means in Ceilometer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from telemetry.collect.jsonpath import ExtJsonPath, JsonPath, compile_path
from telemetry.collect.meters import MeterMapping


@pytest.fixture(scope="module")
def ceilometer_meters() -> MeterMapping:
    import ceilometer

    path = Path(ceilometer.__file__).parent / "data" / "meters.d" / "meters.yaml"
    return MeterMapping.load([path])


def _samples(mapping: MeterMapping, doc: dict[str, Any]) -> dict[str, Any]:
    good, bad = mapping.samples(doc)
    assert not bad
    return {s.counter_name: s for s in good}


def test_every_definition_of_ceilometers_meters_yaml_loads(ceilometer_meters: MeterMapping) -> None:
    assert ceilometer_meters.errors == []
    assert len(ceilometer_meters.definitions) == 38


def test_arithmetic_and_string_joins(ceilometer_meters: MeterMapping) -> None:
    doc = {"event_type": "compute.metrics.update", "publisher_id": "compute.cn01",
           "metadata": {"message_id": "m1", "timestamp": "2026-01-01T10:01:00Z"},
           "payload": {"host": "cn01", "nodename": "cn01.example", "metrics": [
               {"name": "cpu.percent", "value": 0.25, "timestamp": "2026-01-01T00:00:00", "source": "libvirt"},
               {"name": "cpu.frequency", "value": 2400, "timestamp": "2026-01-01T00:00:00", "source": "libvirt"}]}}
    got = _samples(ceilometer_meters, doc)
    assert got["compute.node.cpu.percent"].counter_volume == 25.0
    assert got["compute.node.cpu.percent"].resource_id == "cn01_cn01.example"
    assert got["compute.node.cpu.frequency"].counter_volume == 2400


def test_a_meter_named_by_a_path_and_the_split_function(ceilometer_meters: MeterMapping) -> None:
    auth = {"event_type": "identity.authenticate", "metadata": {"message_id": "m2", "timestamp": "2026-01-01T10:01:00Z"},
            "payload": {"outcome": "success", "initiator": {"id": "u1"}}}
    got = _samples(ceilometer_meters, auth)
    assert got["identity.authenticate.success"].counter_volume == 1
    assert got["identity.authenticate.success"].user_id == "u1"
    pool = {"event_type": "capacity.pool", "metadata": {"message_id": "m3", "timestamp": "2026-01-01T10:01:00Z"},
            "payload": {"name_to_id": "lvm#pool1", "total": 100, "free": 40, "allocated": 60, "provisioned": 70,
                        "virtual_free": 30}}
    got = _samples(ceilometer_meters, pool)
    assert got["volume.provider.pool.capacity.free"].counter_volume == 40
    assert got["volume.provider.pool.capacity.free"].resource_metadata["provider"] == "lvm"


def test_the_timedelta_plugin(ceilometer_meters: MeterMapping) -> None:
    doc = {"event_type": "compute.instance.create.end", "metadata": {"message_id": "m4", "timestamp": "2026-01-01T10:01:00Z"},
           "payload": {"instance_id": "i1", "tenant_id": "p1", "created_at": "2026-01-01 10:00:00+00:00",
                       "launched_at": "2026-01-01T10:00:42.5+00:00", "memory_mb": 512, "vcpus": 1}}
    got = _samples(ceilometer_meters, doc)
    assert got["compute.instance.booting.time"].counter_volume == 42.5


def test_the_fast_evaluator_stays_in_front() -> None:
    assert isinstance(compile_path("$.payload.metrics[?(@.name='cpu')].value"), JsonPath)
    assert isinstance(compile_path("$.payload.metrics[?(@.name='cpu')].value * 100"), ExtJsonPath)


def test_an_unknown_plugin_is_refused_by_name() -> None:
    m = MeterMapping.from_data({"metric": [{"name": "x", "type": "gauge", "event_type": "a", "unit": "s",
                                            "volume": {"fields": ["$.a", "$.b"], "plugin": "nosuch"},
                                            "resource_id": "$.id"}]})
    assert not m.definitions and "no plugin named 'nosuch'" in m.errors[0]
