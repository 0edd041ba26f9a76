"""Ceilometer v2 API over the store (both backends), the meter stage behind it, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from store_support import hour_start, make_store, pg_database, series_samples  # noqa: F401
from telemetry.api.app import create_app
from telemetry.bus import MemoryBus
from telemetry.bus.records import publish_records
from telemetry.config import Settings
from telemetry.runtime import Runtime
from telemetry.meter.pipeline_stage import PipelineStage
from telemetry.meter.stage import MeterStage
from tests.support import wait_for


class Recorder:
    """A stand-in for the ingest helper's transformer pipeline: passes samples on, counts checkpoints."""

    def __init__(self) -> None:
        self.seen = 0
        self.checkpoints = 0

    def process(self, samples):
        self.seen += len(samples)
        return samples

    def checkpoint(self) -> None:
        self.checkpoints += 1

    def rollback(self) -> None:
        raise AssertionError("nothing in these tests fails to publish")


@pytest.fixture
async def api(make_store, tmp_path: Path):
    store = make_store()
    settings = Settings(data_dir=tmp_path, api={"tokens": ["s3cret", {"token": "r3ad", "scope": "read"}]})
    rt = Runtime(settings=settings, mode="server", bus=MemoryBus(), data_dir=tmp_path)
    rt.sample_store = store
    rt.sample_pipeline = Recorder()  # type: ignore[assignment]
    pipeline = PipelineStage(rt, rt.sample_pipeline)
    stage = MeterStage(rt, store)
    await pipeline.start()
    await stage.start()
    app = create_app(rt)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                 headers={"X-Auth-Token": "r3ad"}) as client:
        yield client, rt, stage, store
    await stage.stop()
    await pipeline.stop()




async def test_samples_from_the_bus_are_stored_once_and_served(api) -> None:
    client, rt, stage, store = api
    t0 = hour_start() - timedelta(hours=1)
    batch = series_samples("cpu_util", 3, t0, timedelta(minutes=1), 30)
    await publish_records(rt.bus, batch)
    await publish_records(rt.bus, batch[:10])  # redelivered
    await wait_for(lambda: stage.stored == 90 and stage.duplicates == 10)
    assert rt.sample_pipeline.checkpoints >= 1

    meters = (await client.get("/v2/meters")).json()
    assert {m["resource_id"] for m in meters} == {"res-0", "res-1", "res-2"}
    assert set(meters[0]) == {"meter_id", "name", "type", "unit", "resource_id", "project_id", "user_id", "source"}

    r = await client.get("/v2/meters/cpu_util", params={"q.field": "resource_id", "q.op": "eq",
                                                        "q.value": "res-1", "limit": 5})
    old = r.json()
    assert len(old) == 5 and {s["resource_id"] for s in old} == {"res-1"}
    assert set(old[0]) >= {"counter_name", "counter_type", "counter_unit", "counter_volume", "timestamp",
                           "recorded_at", "resource_metadata", "message_id"}

    params = [("q.field", "timestamp"), ("q.op", "ge"), ("q.value", t0.isoformat()),
              ("q.field", "resource_metadata.flavor.name"), ("q.op", "eq"), ("q.value", "m1.large"),
              ("period", "600"), ("groupby", "resource_id")]
    stats = (await client.get("/v2/meters/cpu_util/statistics", params=params)).json()
    assert {s["groupby"]["resource_id"] for s in stats} == {"res-0", "res-2"}
    assert all(s["period"] == 600 and s["count"] == 10 for s in stats)
    assert set(stats[0]) == {"groupby", "unit", "min", "max", "avg", "sum", "count", "aggregate", "duration",
                             "duration_start", "duration_end", "period", "period_start", "period_end"}
    agg = (await client.get("/v2/meters/cpu_util/statistics", params={"aggregate.func": "stddev"})).json()
    assert agg[0]["max"] is None and agg[0]["aggregate"]["stddev"] > 0

    samples = (await client.get("/v2/samples", params={"q.field": "meter", "q.value": "cpu_util",
                                                       "limit": 3})).json()
    assert len(samples) == 3 and set(samples[0]) >= {"id", "meter", "type", "unit", "volume", "metadata"}
    res = (await client.get("/v2/resources")).json()
    assert [r["resource_id"] for r in res] == ["res-0", "res-1", "res-2"]
    assert res[0]["links"][0]["rel"] == "self" and res[0]["first_sample_timestamp"]


async def test_post_needs_a_token_and_counts_once(api) -> None:
    client, rt, stage, store = api
    body = [{"counter_name": "custom", "counter_type": "gauge", "counter_unit": "req", "counter_volume": 4,
             "resource_id": "app-1", "message_id": "5d3c2b1a-0000-4000-8000-00000000abcd",
             "timestamp": (hour_start() - timedelta(minutes=5)).isoformat()}]
    assert (await client.post("/v2/meters/custom", json=body, headers={"X-Auth-Token": "no"})).status_code == 401
    assert (await client.post("/v2/meters/custom", json=body)).status_code == 403  # the read token
    auth = {"Authorization": "Bearer s3cret"}
    for _ in range(2):  # the client retries: stored once
        r = await client.post("/v2/meters/custom", json=body, headers=auth)
        assert r.status_code == 201 and r.json()[0]["message_id"] == body[0]["message_id"]
    await wait_for(lambda: stage.stored == 1 and stage.duplicates == 1)
    stats = (await client.get("/v2/meters/custom/statistics")).json()
    assert stats[0]["count"] == 1 and stats[0]["sum"] == 4 and stats[0]["unit"] == "req"
    wrong = await client.post("/v2/meters/other", json=body, headers=auth)
    assert wrong.status_code == 400 and "does not match" in wrong.json()["error_message"]["faultstring"]


async def test_bad_queries_are_400_naming_the_problem(api) -> None:
    client, *_ = api
    r = await client.get("/v2/meters/cpu_util/statistics", params={"q.field": "colour", "q.value": "red"})
    assert r.status_code == 400 and "colour" in r.json()["error_message"]["faultstring"]
    r = await client.get("/v2/meters/cpu_util/statistics", params={"period": "-5"})
    assert r.status_code == 400 and "period" in r.json()["error_message"]["faultstring"]
    r = await client.get("/v2/meters/cpu_util/statistics", params={"aggregate.func": "median"})
    assert r.status_code == 400 and "median" in r.json()["error_message"]["faultstring"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}  # wide enough that rich does not fold meter names
    return subprocess.run([sys.executable, "-m", "telemetry", *args], capture_output=True, text=True, timeout=30,
                          env=env)


def test_run_stores_this_hosts_samples_and_the_cli_shows_them(daemon_factory) -> None:
    d = daemon_factory(config={"sources": {"host_metrics": {"interval": "1s"}}}).start()
    deadline = time.monotonic() + 20
    names: set[str] = set()
    while time.monotonic() < deadline and "hardware.cpu.util" not in names:
        names = {m["name"] for m in httpx.get(d.url + "/v2/meters", timeout=5).json()}
        time.sleep(0.3)
    assert "hardware.cpu.util" in names and "hardware.memory.used" in names
    assert (Path(d.tmp) / "data" / "samples" / "index.db").exists()
    out = cli("meter-list", "--url", d.url)
    assert out.returncode == 0 and "hardware.cpu.util" in out.stdout, out.stderr
    stats = cli("statistics", "-m", "hardware.cpu.util", "--url", d.url, "--period", "60", "-f", "json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)[0]["count"] >= 1
    table = cli("statistics", "-m", "hardware.cpu.util", "--url", d.url, "-q", "resource_id!=nothing")
    for column in ("Period", "Period Start", "Period End", "Max", "Min", "Avg", "Sum", "Count", "Duration",
                   "Duration Start", "Duration End"):
        assert column in table.stdout, table.stdout
    # Two samples exist once two 1 s intervals passed: the CLI calls above may take less than that.
    while time.monotonic() < deadline + 10 and len(httpx.get(d.url + "/v2/meters/hardware.cpu.util",
                                                             params={"limit": 2}, timeout=5).json()) < 2:
        time.sleep(0.3)
    listed = cli("sample-list", "-m", "hardware.cpu.util", "--url", d.url, "-l", "2")
    assert listed.returncode == 0 and listed.stdout.count("hardware.cpu.util") == 2
    bad = cli("statistics", "-m", "x", "--url", d.url, "-q", "nonsense")
    assert bad.returncode != 0 and "bad query term" in bad.stderr
    assert d.stop() == 0



