"""Meters, alarm states and log counters on /metrics: units, promtool, and a real Prometheus scraping us."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from telemetry.config.exporter import MeterGauges
from telemetry.exporter.alarms import AlarmState, AlarmStateTable
from telemetry.exporter.tally import access, level_label
from telemetry.exporter.meters import SERIES_REFUSED, MeterGaugeTable, doc_row, family_name, sample_row
from telemetry.fastcodec import fast_sample_doc
from telemetry.models import AlarmTransition, Sample
from tests.conftest import free_port

NOW = 1_714_557_600.0


def sample(
    name: str,
    volume: float,
    rid: str = "cn01",
    unit: str = "%",
    ctype: str = "gauge",
    ts: float = NOW,
    **meta: Any,
) -> Sample:
    return Sample(
        counter_name=name,
        counter_type=ctype,
        counter_unit=unit,
        counter_volume=volume,
        resource_id=rid,
        project_id=meta.pop("project", None),
        timestamp=ts,
        resource_metadata={"host": "cn01", **meta},
    )


def scrape(collector: Any) -> str:
    reg = CollectorRegistry()
    reg.register(collector)
    return generate_latest(reg).decode()


def test_meter_names_follow_prometheus_conventions() -> None:
    assert family_name("hardware.memory.used", "KB") == ("telemetry_meter_hardware_memory_used_bytes", 1024.0)
    assert family_name("hardware.cpu.util", "%") == ("telemetry_meter_hardware_cpu_util_percent", 1.0)
    assert family_name("hardware.network.incoming.bytes", "B") == (
        "telemetry_meter_hardware_network_incoming_bytes",
        1.0,
    )
    assert family_name("cpu", "ns") == ("telemetry_meter_cpu_seconds", 1e-9)
    assert family_name("vcpus", "vcpu") == ("telemetry_meter_vcpus", 1.0)
    assert family_name("x.total", "thing") == ("telemetry_meter_x_total_value", 1.0)


def test_meter_table_allow_list_limit_staleness_and_order() -> None:
    table = MeterGaugeTable(
        MeterGauges(meters=["hardware.*", "!hardware.disk.*"], max_series=3, stale_after="10m")
    )
    refused = SERIES_REFUSED.labels(meter="hardware.cpu.util")._value.get()
    shown = table.update(
        [
            sample_row(s)
            for s in [
                sample("hardware.cpu.util", 12.5),
                sample("hardware.memory.used", 2048, unit="KB"),
                sample(
                    "hardware.network.incoming.bytes",
                    1e6,
                    rid="cn01.eth0",
                    unit="B",
                    ctype="cumulative",
                    interface="eth0",
                ),
                sample("hardware.disk.size.used", 1, unit="KB"),  # excluded
                sample("cpu_util", 50),  # not allowed
                sample("hardware.cpu.util", 1, rid="cn02"),  # a fourth series: refused
                sample("hardware.cpu.util", 1, rid="cn02"),  # the same refused series is counted once
                sample("hardware.cpu.util", 99, ts=NOW - 3600),  # older than stale_after
            ]
        ],
        now=NOW,
    )
    assert shown == 3 and table.size == 3
    assert SERIES_REFUSED.labels(meter="hardware.cpu.util")._value.get() == refused + 1
    table.update([sample_row(sample("hardware.cpu.util", 7, ts=NOW - 5))], now=NOW)  # late: newer stays
    text = scrape(table)
    assert 'telemetry_meter_hardware_cpu_util_percent{host="cn01",project="",resource="cn01"} 12.5' in text
    assert (
        'telemetry_meter_hardware_memory_used_bytes{host="cn01",project="",resource="cn01"} 2.097152e+06'
        in text
    )
    assert "# TYPE telemetry_meter_hardware_network_incoming_bytes_total counter" in text
    assert (
        'telemetry_meter_hardware_network_incoming_bytes_total{host="cn01",project="",resource="cn01.eth0"} '
        "1e+06" in text
    )
    assert table.expire(now=NOW + 601) == 3 and table.size == 0 and scrape(table).strip() == ""


def transition(aid: str, current: str, ts: float, previous: str = "ok", **extra: Any) -> AlarmTransition:
    return AlarmTransition(
        alarm_id=aid,
        alarm_name=f"name-{aid}",
        severity="moderate",
        previous=previous,
        current=current,
        timestamp=datetime.fromtimestamp(ts, timezone.utc),
        **extra,
    )


def test_alarm_states_one_series_per_state() -> None:
    table = AlarmStateTable(lambda: 42)
    table.load([AlarmState("a1", "cpu-high", "threshold", "low", "", "insufficient data", NOW - 100)])
    assert table.apply(transition("a1", "alarm", NOW, alarm_type="threshold"))
    assert not table.apply(transition("a1", "ok", NOW - 50))  # older than what is shown: a replay
    # a grouped alarm fires while any group fires
    g = {"alarm_type": "threshold"}
    table.apply(transition("g", "alarm", NOW, reason_data={"group": {"resource_id": "r1"}}, **g))
    table.apply(transition("g", "ok", NOW + 1, reason_data={"group": {"resource_id": "r2"}}, **g))
    table.apply(transition("t", "alarm", NOW, alarm_type="trigger", labels={"host": "cn01"}))
    text = scrape(table)
    assert (
        'telemetry_alarm_state{alarm_id="a1",alarm_name="name-a1",host="",severity="moderate",state="alarm",'
        'type="threshold"} 1.0'
    ) in text
    assert (
        'alarm_id="a1",alarm_name="name-a1",host="",severity="moderate",state="ok",type="threshold"} 0.0'
        in text
    )
    assert (
        'alarm_id="g",alarm_name="name-g",host="",severity="moderate",state="alarm",type="threshold"} 1.0'
        in text
    )
    assert (
        'alarm_id="t",alarm_name="name-t",host="cn01",severity="moderate",state="alarm",type="trigger"} 1.0'
        in text
    )
    assert "telemetry_rules_evaluations_total 42.0" in text
    table.retain({"a1"})
    assert set(table.alarms) == {"a1"}


def fast_row(raw: bytes) -> tuple | None:
    doc = fast_sample_doc(raw)
    return doc_row(doc) if doc is not None else None


def test_fast_rows_equal_the_model_rows() -> None:
    for s in [
        sample("hardware.cpu.util", 12.5, project="p1"),
        sample("cpu", 7, unit="ns", ctype="cumulative", instance_host="cn07", host="hashed"),
    ]:
        assert fast_row(s.to_json()) == sample_row(s)
        assert fast_row(s.to_msgpack()) == sample_row(s)
    for odd in (
        b"{}",
        b'{"counter_name": 1}',
        b"\xff",
        b'{"counter_name": "m", "counter_type": "gauge", '
        b'"counter_volume": true, "resource_id": "r", "timestamp": "2024-05-01T00:00:00Z"}',
    ):
        assert fast_row(odd) is None  # the model decides, and dead-letters with its reason


def test_access_lines_and_levels_are_bounded() -> None:
    assert access({"method": "GET", "status": 200, "duration": 0.25}) == ("GET", "200", 0.25)
    assert access({"verb": "post", "response": "503"}) == ("POST", "503", None)
    assert access({"http_verb": "BREW", "http_status_code": 418, "request_time": "x"}) == (
        "other",
        "418",
        None,
    )
    assert access({"method": "GET", "status": 999}) is None and access({"message": "hi"}) is None
    for _ in range(2):  # the second time from the memo of level texts
        assert [level_label(v) for v in ("warn", "ERROR", "emerg", "Notice", "chatty", None, "", 5)] == [
            "WARNING",
            "ERROR",
            "CRITICAL",  # as the parser normalises them (telemetry.parse.normalise), not a second mapping
            "INFO",
            "other",
            "none",
            "none",
            "none",
        ]
    from telemetry.exporter import tally

    for i in range(3 * tally._MAX_LABELS):  # hostile level texts: the memo stays bounded
        assert level_label(f"lvl{i}") == "other"
    assert len(tally._LABELS) <= tally._MAX_LABELS and level_label("Warn") == "WARNING"


# -- a real daemon, promtool and a real Prometheus -----------------------------------------------------------

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
ALARM = {
    "name": "cpu-seen",
    "type": "threshold",
    "severity": "critical",
    "threshold_rule": {
        "meter_name": "hardware.cpu.util",
        "threshold": 0,
        "comparison_operator": "ge",
        "statistic": "max",
        "period": 1,
        "evaluation_periods": 1,
    },
}


def query(url: str, promql: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


@pytest.mark.slow
def test_prometheus_scrapes_meters_and_alarm_states(daemon_factory: Any, tmp_path: Path) -> None:
    assert PROMETHEUS and PROMTOOL, (
        "prometheus missing: run scripts/setup.sh test (Debian package prometheus)"
    )
    d = daemon_factory("run", {"sources": {"host_metrics": {"interval": 1}}}).start()
    r = httpx.post(d.url + "/v2/alarms", json=ALARM, timeout=5)
    assert r.status_code == 201, r.text
    alarm_id = r.json()["alarm_id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = httpx.get(d.url + "/metrics", timeout=5).text
        if (
            f'alarm_id="{alarm_id}",alarm_name="cpu-seen",host="",severity="critical",state="alarm"' in text
            and "telemetry_meter_hardware_cpu_util_percent{" in text
        ):
            break
        time.sleep(0.2)
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: telemetry
    static_configs: [{{targets: ["127.0.0.1:{d.port}"]}}]
""")
    prom = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        host_cpu: list[dict[str, Any]] = []
        state: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not (host_cpu and state):
            time.sleep(0.5)
            try:
                host_cpu = query(url, "telemetry_meter_hardware_cpu_util_percent")
                state = query(url, f'telemetry_alarm_state{{alarm_id="{alarm_id}",state="alarm"}} == 1')
            except httpx.HTTPError:
                continue
        assert host_cpu, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert host_cpu[0]["metric"]["host"] and host_cpu[0]["metric"]["job"] == "telemetry"
        assert 0 <= float(host_cpu[0]["value"][1]) <= 100
        assert (
            state
            and state[0]["metric"]["alarm_name"] == "cpu-seen"
            and state[0]["metric"]["severity"] == "critical"
        )
        mem = query(url, "telemetry_meter_hardware_memory_total_bytes")
        assert mem and float(mem[0]["value"][1]) > 1e8  # KB scaled to bytes
    finally:
        prom.terminate()
        prom.wait(timeout=10)
        d.stop()


async def test_log_counters_count_once_and_leave_dead_letters_to_writers(tmp_path: Path) -> None:
    from telemetry.bus import MemoryBus, OutMessage
    from telemetry.bus.topics import DEAD_LETTER
    from telemetry.config import Settings
    from telemetry.exporter.logs import API_REQUESTS, LOG_EVENTS, LogCounters
    from telemetry.models import Event, encode
    from telemetry.runtime import Runtime
    from tests.support import wait_for

    bus = MemoryBus()
    stage = LogCounters(Runtime(settings=Settings(data_dir=tmp_path), mode="server", bus=bus, data_dir=tmp_path))
    access_line = Event.model_validate({"component": "glance-x", "level": "INFO", "message": "GET /v2/images",
                                        "method": "GET", "status": 503, "duration": 0.2})
    errors_before = LOG_EVENTS.labels(component="glance-x", level="INFO")._value.get()
    dead = await bus.subscribe([DEAD_LETTER], "inspect")
    await stage.start()
    try:
        await bus.publish("events", [OutMessage(encode(access_line)), OutMessage(b'{"@timestamp": "not a time"}'),
                                     OutMessage(encode(access_line))])  # a redelivered copy counts once
        await wait_for(lambda: stage.rejected == 1 and stage.processed == 2)
    finally:
        await stage.stop()
    assert LOG_EVENTS.labels(component="glance-x", level="INFO")._value.get() == errors_before + 1
    assert API_REQUESTS.labels(component="glance-x", method="GET", code="503")._value.get() == 1
    assert await dead.fetch(10, 0.2) == []  # the event store and the rules dead-letter it, not an observer


async def test_log_counters_tally_a_batch_per_label_set(tmp_path: Path) -> None:
    """One inc() per (component, level) per batch adds up to one per line, whatever the mix."""
    from telemetry.bus import Delivery, MemoryBus
    from telemetry.config import Settings
    from telemetry.exporter.logs import API_DURATION, API_REQUESTS, LOG_EVENTS, LogCounters
    from telemetry.runtime import Runtime

    stage = LogCounters(Runtime(settings=Settings(data_dir=tmp_path), mode="server", bus=MemoryBus(),
                                data_dir=tmp_path))
    levels = ["INFO", "ERROR", "info", "WARNING", "bogus", None]
    docs = [{"id": f"tally-{i}", "component": "tally-c", "level": levels[i % len(levels)], "message": "m",
             **({"method": "get", "status": "404", "duration": "0.5"} if i % 7 == 0 else {})} for i in range(600)]

    def value(metric: Any, **labels: str) -> float:
        return metric.labels(**labels)._value.get()

    before = {lv: value(LOG_EVENTS, component="tally-c", level=lv) for lv in ("INFO", "ERROR", "WARNING", "other", "none")}
    await stage.handle([(Delivery(topic="events", value=b""), d) for d in docs])
    await stage.handle([(Delivery(topic="events", value=b""), d) for d in docs])  # redelivered: counted once
    expect = {"INFO": 200, "ERROR": 100, "WARNING": 100, "other": 100, "none": 100}
    for lv, n in expect.items():
        assert value(LOG_EVENTS, component="tally-c", level=lv) - before[lv] == n, lv
    assert value(API_REQUESTS, component="tally-c", method="GET", code="404") == 86
    assert API_DURATION.labels(component="tally-c")._sum.get() == 43.0
