"""The JSON the console reads beside the existing APIs: trace, pipeline counters, session; its assets' serving."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from telemetry.api.app import create_app
from telemetry.bus import MemoryBus
from telemetry.config import Settings
from telemetry.events.rows import event_row, notification_row
from telemetry.events.store import EventStore
from telemetry.metrics import RECORDS_IN, RECORDS_REJECTED
from telemetry.models import Notification
from telemetry.runtime import Runtime
from telemetry.ui import STATIC, asset_names

NOW = datetime.now(timezone.utc).replace(microsecond=0)
REQ = "req-11111111-2222-4333-8444-555566667777"
VM = "0b8a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"


def _ev(seconds: int, component: str, host: str, message: str, **kw: Any) -> dict[str, Any]:
    return {"@timestamp": (NOW + timedelta(seconds=seconds)).isoformat(), "host": host, "component": component,
            "type": "openstack", "level": kw.pop("level", "INFO"), "message": message, "id": f"{component}-{seconds}",
            **kw}


def _client(tmp_path: Path, tokens: list[str] | None = None, store: EventStore | None = None) -> TestClient:
    settings = Settings(data_dir=tmp_path, api={"tokens": tokens or []})
    rt = Runtime(settings=settings, mode="run", bus=MemoryBus(), data_dir=tmp_path)
    rt.event_store = store
    return TestClient(create_app(rt))


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    s = EventStore(tmp_path / "events", ttl=86400.0 * 30)
    s.insert([
        event_row(_ev(3, "nova", "cn01", "Instance failed to spawn", request_id=REQ, level="ERROR", instance_id=VM)),
        event_row(_ev(1, "nova", "ctl01", "POST /v2.1/servers", request_id=REQ)),
        event_row(_ev(2, "neutron", "net01", f"GET /v2.0/ports?device_id={VM}", request_id="req-other",
                      global_request_id=REQ)),
        event_row(_ev(4, "glance", "ctl01", "unrelated", request_id="req-zzz")),
        notification_row(Notification(message_id="n-1", event_type="compute.instance.create.error",
                                      publisher_id="compute.cn01", timestamp=NOW + timedelta(seconds=5),
                                      payload={"instance_id": VM})),
    ])
    return s


def test_trace_finds_a_request_across_services_oldest_first(tmp_path: Path, store: EventStore) -> None:
    c = _client(tmp_path, store=store)
    body = c.get("/v1/events/trace", params={"request_id": REQ}).json()
    assert [(e["component"], e["host"]) for e in body["events"]] == [("nova", "ctl01"), ("neutron", "net01"),
                                                                    ("nova", "cn01")]
    assert body["services"] == ["nova", "neutron"] and body["hosts"] == ["ctl01", "net01", "cn01"]
    assert body["kind"] == "request" and body["id"] == REQ and body["truncated"] is False
    inst = c.get("/v1/events/trace", params={"instance": VM}).json()["events"]
    assert [e.get("event_type") or e["component"] for e in inst] == ["neutron", "nova", "compute.instance.create.error"]
    limited = c.get("/v1/events/trace", params={"request_id": REQ, "limit": 2}).json()
    assert len(limited["events"]) == 2 and limited["truncated"] is True


@pytest.mark.parametrize("params", [{}, {"request_id": REQ, "instance": VM}, {"request_id": ""}])
def test_trace_wants_exactly_one_id(tmp_path: Path, store: EventStore, params: dict[str, str]) -> None:
    r = _client(tmp_path, store=store).get("/v1/events/trace", params=params)
    assert r.status_code == 400 and "exactly one of request_id, instance, volume" in r.text


@pytest.mark.parametrize("name", ["request_id", "instance", "volume"])
def test_an_id_no_query_can_hold_is_refused_naming_it(tmp_path: Path, store: EventStore, name: str) -> None:
    r = _client(tmp_path, store=store).get("/v1/events/trace", params={name: "req-\x00x"})
    assert r.status_code == 400 and f"{name}: cannot be searched for" in r.text and "NUL" in r.text


def test_pipeline_counters_move_with_the_stages(tmp_path: Path) -> None:
    c = _client(tmp_path)
    before = c.get("/v1/pipeline").json()
    RECORDS_IN.labels(stage="console.test").inc(7)
    RECORDS_REJECTED.labels(stage="console.test", reason="invalid:x").inc(2)
    RECORDS_REJECTED.labels(stage="console.test", reason="undecodable:y").inc(1)
    after = c.get("/v1/pipeline").json()
    old = before["stages"].get("console.test", {"records_in": 0, "rejected": 0})
    assert after["stages"]["console.test"]["records_in"] - old["records_in"] == 7
    assert after["stages"]["console.test"]["rejected"] - old["rejected"] == 3  # every reason summed
    assert after["time"] >= before["time"] and set(after["spool"]) == {"bytes", "batches"}
    assert "components" in after


def test_session_says_whether_a_token_is_needed_and_valid(tmp_path: Path, store: EventStore) -> None:
    assert _client(tmp_path, store=store).get("/ui/session").json() == {"auth_required": False, "authenticated": True}
    c = _client(tmp_path, tokens=["t0k"], store=store)
    assert c.get("/ui/session").json() == {"auth_required": True, "authenticated": False}
    assert c.get("/ui/session", headers={"Authorization": "Bearer nope"}).json()["authenticated"] is False
    assert c.get("/ui/session", headers={"Authorization": "Bearer t0k"}).json()["authenticated"] is True


def test_assets_come_from_the_package_and_nothing_else(tmp_path: Path, store: EventStore) -> None:
    c = _client(tmp_path, store=store)
    page = c.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]  # no inline script, no other host
    refs = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert refs and all(r.startswith(("/ui/static/", "data:")) for r in refs), refs  # no CDN, no other host
    for ref in (r for r in refs if not r.startswith("data:")):
        got = c.get(ref)
        assert got.status_code == 200 and len(got.content) > 100, ref
    assert "uPlot" in c.get("/ui/static/vendor/uPlot.iife.min.js").text
    for bad in ("../__init__.py", "..%2f__init__.py", "/etc/passwd", "index.html", "nope.js"):
        assert c.get(f"/ui/static/{bad}").status_code == 404, bad
    assert {"core.js", "logs.js", "vendor/uPlot.iife.min.js"} <= asset_names()
    assert all((STATIC / n).is_file() for n in asset_names())


def test_an_agent_serves_no_console(tmp_path: Path) -> None:
    assert _client(tmp_path).get("/ui").status_code == 404  # no store, no rule engine: nothing to show
