"""Elasticsearch and Loki sinks against receivers keeping their documented contracts (tests/sink_servers.py).

Each contract test runs the sink as a bus stage over the memory bus and
checks the delivery promise: every good event stored exactly once through a
429 storm, 5xx answers and a receiver restart; the one event the receiver
refuses alone is dead-lettered with its reason and counted.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from telemetry.bus import Bus, MemoryBus
from telemetry.bus.records import publish_records
from telemetry.config import ConfigError, Settings, load_config
from telemetry.config.sinks import ElasticsearchSink, LokiSink
from telemetry.metrics import RECORDS_DEAD_LETTERED
from telemetry.models import Event
from telemetry.runtime import Runtime
from telemetry.sinks.ecs import ALIASES, daily_index, ecs_document, index_template
from telemetry.sinks.elasticsearch import ElasticsearchStage
from telemetry.sinks.loki import LokiStage, label_string
from telemetry.stage import DEAD_LETTER_TOPIC
from tests.conftest import free_port
from tests.sink_servers import ElasticsearchContract, LokiContract, parse_labels
from tests.support import wait_for

T0 = datetime(2024, 5, 1, 23, 59, 58, tzinfo=timezone.utc)
FAST = {"backoff_initial": "0.01s", "backoff_max": "0.05s", "max_retries": 3, "timeout": "2s"}


def runtime(bus: Bus) -> Runtime:
    return Runtime(
        settings=Settings(data_dir=Path("/nonexistent")),
        mode="server",
        bus=bus,
        data_dir=Path("/nonexistent"),
    )


def event(i: int, **extra: Any) -> Event:
    return Event.model_validate(
        {
            "@timestamp": T0 + timedelta(seconds=i),
            "host": f"cn{i % 2}",
            "component": ["nova", "glance"][i % 2],
            "type": "openstack",
            "level": "ERROR" if i % 5 == 0 else "INFO",
            "logger": "nova.compute.manager",
            "pid": 1000 + i,
            "request_id": f"req-{i:04d}",
            "project_id": "p1",
            "instance_id": f"vm-{i}",
            "message": f"line {i}",
            "tags": ["t"],
            **extra,
        }
    )


async def dead_letters(bus: Bus) -> list[tuple[dict[str, str], dict[str, Any]]]:
    consumer = await bus.subscribe([DEAD_LETTER_TOPIC], "inspect")
    got = await consumer.fetch(100, 0.2)
    await consumer.ack(got)
    await consumer.close()
    return [(d.headers, orjson.loads(d.value)) for d in got]


# -- ECS -------------------------------------------------------------------------------------------


def test_ecs_document_keeps_operator_names_as_aliases() -> None:
    doc = ecs_document(event(0, verb="GET", http="captured", log="x").to_dict())
    assert doc["service"]["name"] == "nova" and doc["event"]["module"] == "openstack"
    assert doc["event"]["dataset"] == "openstack.nova" and doc["host"] == {"name": "cn0"}
    assert (
        doc["log"] == {"level": "ERROR", "logger": "nova.compute.manager"} and doc["process"]["pid"] == 1000
    )
    assert doc["http"]["request"]["id"] == "req-0000" and doc["cloud"]["project"]["id"] == "p1"
    assert doc["message"] == "line 0" and doc["@timestamp"].startswith("2024-05-01T23:59:58")
    assert doc["verb"] == "GET"  # a capture keeps its name (Logstash's habit)
    # captures named like an ECS field set move aside instead of breaking the mapping
    assert doc["openstack"] == {"instance_id": "vm-0", "http": "captured", "log": "x"}
    for legacy in ("type", "component", "level", "host", "pid", "request_id"):
        assert legacy not in doc or legacy == "host"
    tpl = index_template("telemetry-events", 1, 0, "telemetry-events")
    props = tpl["template"]["mappings"]["properties"]
    assert props["type"] == {"type": "alias", "path": "event.module"}
    assert props["component"] == {"type": "alias", "path": "service.name"}
    assert props["host"]["type"] == "flattened"  # `host:cn0` and `host.name:cn0` both match
    for name, path in ALIASES.items():  # every alias points at a mapped field
        node: Any = props
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]["properties"]
        assert leaf in node, name
    assert tpl["template"]["settings"]["index.lifecycle.parse_origination_date"] is True
    assert daily_index("telemetry-events", doc["@timestamp"]) == "telemetry-events-2024.05.01"


def test_sink_config_is_validated(tmp_path: Any) -> None:
    def load(text: str) -> Any:
        f = tmp_path / "c.yaml"
        f.write_text(text)
        return load_config(f, env={})

    s = load("sinks:\n  elasticsearch: {}\n  loki: {enabled: false}\n")
    assert s.sinks.elasticsearch.enabled and s.sinks.elasticsearch.urls == ["http://127.0.0.1:9200"]
    assert s.sinks.loki is not None and not s.sinks.loki.enabled
    for bad, words in [
        ("sinks: {elasticsearch: {url: x}}", "sinks.elasticsearch.url"),
        ("sinks: {elasticsearch: {username: u}}", "username and password go together"),
        ("sinks: {elasticsearch: {urls: ['ftp://x']}}", "unsupported elasticsearch URL"),
        ("sinks: {loki: {labels: [request_id]}}", "sinks.loki.labels"),
        ("sinks: {loki: {static_labels: {'bad-name': x}}}", "not a valid Loki label name"),
        ("sinks: {kafka: {}}", "sinks.kafka"),
    ]:
        with pytest.raises(ConfigError) as err:
            load(bad)
        assert words in str(err.value), (bad, str(err.value))


# -- Elasticsearch -------------------------------------------------------------------------------------------


async def test_elasticsearch_storm_partial_failure_and_restart() -> None:
    es = ElasticsearchContract().start()
    bus = MemoryBus()
    cfg = ElasticsearchSink.model_validate(
        {"urls": [es.url], "batch_size": 20, "retention": "7d", "replicas": 0, **FAST}
    )
    stage = ElasticsearchStage(runtime(bus), cfg)
    dead_before = RECORDS_DEAD_LETTERED.labels(stage="sink.elasticsearch")._value.get()
    try:
        await stage.start()
        # the first requests meet an overloaded cluster: whole requests and single documents answered 429
        es.reject_requests, es.reject_items = 3, 7
        good = [event(i, bytes=i) for i in range(60)]
        # `bytes` is a number in the index (dynamic mapping): this one document cannot be indexed,
        # the others beside it can
        poison = event(1000, bytes="many")
        await publish_records(bus, good[:30] + [poison] + good[30:])
        await wait_for(lambda: len(es.docs()) == 60, timeout=20)
        # receiver restart: events published while it is down wait on the bus, none is lost
        es.stop()
        later = [event(i) for i in range(60, 90)]
        await publish_records(bus, later)
        await asyncio.sleep(0.5)
        assert stage.held >= 1 or stage.consumer is not None
        es.start()
        # a redelivered copy (same ids) is answered 409 and stored once
        await publish_records(bus, good[:10])
        await wait_for(lambda: len(es.docs()) == 90, timeout=20)
        await wait_for(lambda: stage.duplicates >= 10, timeout=20)
    finally:
        await stage.stop()
        es.stop()
    docs = es.docs()
    assert set(docs) == {e.id for e in good + later}  # nothing lost, nothing doubled
    assert set(es.indices) == {"telemetry-events-2024.05.01", "telemetry-events-2024.05.02"}
    assert es.policies["telemetry-events"]["phases"]["delete"]["min_age"] == "604800s"
    assert "telemetry-events" in es.templates
    sample = docs[good[5].id]
    assert sample["service"]["name"] == "glance" and sample["event"]["module"] == "openstack"
    dead = await dead_letters(bus)
    assert [(h["reason"], body["id"]) for h, body in dead] == [
        ("refused:400:document_parsing_exception", poison.id)
    ]
    assert RECORDS_DEAD_LETTERED.labels(stage="sink.elasticsearch")._value.get() == dead_before + 1


async def test_elasticsearch_unreachable_holds_events_back() -> None:
    es = ElasticsearchContract()
    es.port = free_port()
    bus = MemoryBus()
    cfg = ElasticsearchSink.model_validate(
        {"urls": [f"http://127.0.0.1:{es.port}"], "batch_size": 10, **{**FAST, "max_retries": 1}}
    )
    stage = ElasticsearchStage(runtime(bus), cfg)
    await stage.start()
    try:
        await publish_records(bus, [event(i) for i in range(25)])
        await wait_for(lambda: stage.held >= 2, timeout=20)  # nobody answers: the batch goes back, again and again
        assert stage.accepted == 0
        es.start()
        await wait_for(lambda: len(es.docs()) == 25, timeout=20)
    finally:
        await stage.stop()
        es.stop()
    assert await dead_letters(bus) == []


# -- Loki ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_loki_storm_partial_failure_and_restart(encoding: str) -> None:
    too_old = event(-3600 * 24)  # older than the receiver accepts: refused alone
    loki = LokiContract(reject_older_than_ns=int((T0 - timedelta(hours=1)).timestamp()) * 10**9).start()
    bus = MemoryBus()
    cfg = LokiSink.model_validate({"url": loki.url, "encoding": encoding, "batch_size": 16, **FAST})
    stage = LokiStage(runtime(bus), cfg)
    try:
        await stage.start()
        loki.reject_requests, loki.fail_requests = 2, 2
        good = [event(i, response=200) for i in range(50)]
        shuffled = (
            good[25:] + [too_old] + good[:25]
        )  # out of time order on the bus: the sink sorts per stream
        await publish_records(bus, shuffled)
        await wait_for(lambda: len(loki.entries()) == 50, timeout=20)
        loki.stop()
        later = [event(i) for i in range(50, 70)]
        await publish_records(bus, later)
        await asyncio.sleep(0.3)
        loki.start()
        await publish_records(bus, good[:5])  # redelivered copies: Loki drops equal entries
        await wait_for(lambda: len(loki.entries()) == 70 and loki.duplicates >= 5, timeout=20)
    finally:
        await stage.stop()
        loki.stop()
    entries = loki.entries()
    ids = [line["id"] for _, _, line in entries]
    assert sorted(ids) == sorted(e.id for e in good + later)  # nothing lost, nothing doubled
    assert loki.unordered_pushes == 0
    labels, ts, line = next(x for x in entries if x[2]["id"] == good[6].id)
    assert labels == {"host": "cn0", "component": "nova", "level": "INFO", "job": "telemetry"}
    assert ts == int((T0 + timedelta(seconds=6)).timestamp()) * 10**9
    assert line["message"] == "line 6" and line["request_id"] == "req-0006" and line["response"] == 200
    assert "host" not in line and "@timestamp" not in line
    dead = await dead_letters(bus)
    assert [(h["reason"], body["id"]) for h, body in dead] == [("refused:400", too_old.id)]


def test_loki_label_text_round_trips() -> None:
    labels = {"host": 'we"ird\\host', "component": "nova", "job": "telemetry"}
    assert dict(parse_labels(label_string(labels))) == labels


# -- wired into the daemon -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_daemon_ships_tailed_logs_to_both_sinks(daemon_factory: Any, samples_dir: Any) -> None:
    """Log files -> agent -> parse -> events topic -> Elasticsearch, Loki and the event store alike."""
    es, loki = ElasticsearchContract().start(), LokiContract().start()
    d = daemon_factory(
        "run",
        {
            "store": {"ttl": {"events": "3650d"}},  # the samples are from March 2026
            "sinks": {"elasticsearch": {"urls": [es.url], "replicas": 0}, "loki": {"url": loki.url}},
        },
    )
    logs = d.tmp / "logs"
    logs.mkdir()
    cfg = yaml.safe_load(d.config_path.read_text())
    cfg["sources"]["files"] = [
        {"paths": [str(logs / f"{c}-*.log")], "fields": {"type": "openstack", "component": c}}
        for c in ("nova", "glance")
    ]
    d.config_path.write_text(yaml.safe_dump(cfg))
    try:
        health = d.start().wait_healthy()
        assert health["components"]["sink.elasticsearch"]["state"] == "running"
        assert health["components"]["sink.loki"]["state"] == "running"
        for name in ("nova-compute.log", "glance-api.log"):
            shutil.copy(samples_dir / "logs" / name, logs / name)
        deadline, stored = time.monotonic() + 30, -1
        while time.monotonic() < deadline:
            stored = len(httpx.get(d.url + "/v1/events", params={"limit": 10_000}).json())
            if stored >= 10 and len(es.docs()) == stored and len(loki.entries()) == stored:
                break
            time.sleep(0.3)
        assert stored >= 10 and len(es.docs()) == stored and len(loki.entries()) == stored, (
            stored,
            len(es.docs()),
            len(loki.entries()),
        )
        components = {labels["component"] for labels, _, _ in loki.entries()}
        assert components == {"nova", "glance"}
        assert {doc["service"]["name"] for doc in es.docs().values()} == {"nova", "glance"}
        metrics = httpx.get(d.url + "/metrics").text
        assert 'telemetry_log_events_total{component="nova",level="INFO"}' in metrics
        assert 'telemetry_sink_records_accepted_total{sink="loki"}' in metrics
    finally:
        d.stop()
        es.stop()
        loki.stop()
