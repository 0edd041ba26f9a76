"""Tracing from the terminal: a request by its own or its global id, an instance or a volume across services."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from store_support import BACKENDS, drop_schemas, pg_database, pg_schema_url  # noqa: F401 (fixture)

from telemetry.cli import main

GLOBAL = "req-aaaaaaaa-1111-4222-8333-444455556666"
LOCAL = "req-bbbbbbbb-1111-4222-8333-444455556666"
INSTANCE = "3f6c2b1e-8d4a-4c1b-9e2f-7a6b5c4d3e21"
VOLUME = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
U, P = "6f1c0a3b2e8d4d7c9b1a2f3e4d5c6b7a", "9a8b7c6d5e4f4a3b2c1d0e9f8a7b6c5d"

NEUTRON = [
    f"2026-03-02 09:14:05.631 2210 INFO neutron.wsgi [{GLOBAL} {LOCAL} {U} {P} - default default] 10.0.0.11 "
    f"\"GET /v2.0/ports?device_id={INSTANCE} HTTP/1.1\" status: 200  len: 1093 time: 0.0851240",
    f"2026-03-02 09:14:06.100 2210 INFO neutron.notifiers.nova [-] Nova event response: server_uuid {INSTANCE}",
]
NOVA = [
    f"2026-03-02 09:14:04.000 31842 INFO nova.compute.manager [{GLOBAL} - - - - -] [instance: {INSTANCE}] "
    "Starting instance...",
    f"2026-03-02 09:14:07.112 31842 INFO nova.compute.manager [req-cccccccc-1111-4222-8333-444455556666 - - - - -] "
    f"[instance: {INSTANCE}] Attaching volume {VOLUME} to /dev/vdb",
]
CINDER = [f"2026-03-02 09:14:08.000 5120 INFO cinder.volume.manager [req-dddddddd-1111-4222-8333-444455556666 - - - "
          f"- -] Attaching volume {VOLUME} completed successfully."]


def search(url: str, *args: str) -> list[dict]:
    out = CliRunner().invoke(main, ["search", *args, "-f", "json", "--url", url])
    assert out.exit_code == 0, out.output
    return [json.loads(line) for line in out.output.splitlines()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_trace_request_instance_and_volume(backend: str, request: pytest.FixtureRequest, daemon_factory,
                                           tmp_path: Path) -> None:
    """On the embedded event store and on PostgreSQL (whose words are cut as FTS5 cuts them: a uuid is a phrase)."""
    store: dict = {"ttl": {"events": "3650d"}}
    if backend == "postgresql":
        pg = request.getfixturevalue("pg_database")
        url, schema = pg_schema_url(pg)
        request.addfinalizer(lambda: drop_schemas(pg, [schema]))
        store["events"] = {"url": url}
    logs = tmp_path / "logs"
    logs.mkdir()
    sources = [{"paths": [str(logs / f"{name}.log")], "fields": {"type": "openstack", "component": name},
                "multiline": "none"} for name in ("neutron", "nova", "cinder")]
    d = daemon_factory("run", {"store": store, "sources": {"files": sources}}).start()
    for name, lines in (("neutron", NEUTRON), ("nova", NOVA), ("cinder", CINDER)):
        (logs / f"{name}.log").write_text("\n".join(lines) + "\n")
    notifications = [
        {"message_id": "n-1", "event_type": "compute.instance.create.end", "publisher_id": "compute.cn01",
         "timestamp": "2026-03-02T09:14:09Z", "payload": {"instance_id": INSTANCE, "state": "active"}},
        {"message_id": "n-2", "event_type": "volume.attach.end", "publisher_id": "volume.st01",
         "timestamp": "2026-03-02T09:14:10Z", "payload": {"volume_id": VOLUME, "instance_uuid": INSTANCE}},
    ]
    assert httpx.post(d.url + "/v1/events", json=notifications).status_code == 202
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(httpx.get(d.url + "/v1/events", params={"limit": 100}).json()) >= 7:
            break
        time.sleep(0.3)
    by_global = search(d.url, "--request-id", GLOBAL)
    assert [(e["component"], e["request_id"]) for e in by_global] == [("nova", GLOBAL), ("neutron", LOCAL)]
    assert by_global[1]["global_request_id"] == GLOBAL
    assert [e["component"] for e in search(d.url, "--request-id", LOCAL)] == ["neutron"]
    inst = search(d.url, "--instance", INSTANCE)
    assert [e["@timestamp"][11:19] for e in inst] == ["09:14:04", "09:14:05", "09:14:06", "09:14:07", "09:14:09",
                                                      "09:14:10"]
    assert {e["component"] for e in inst} >= {"nova", "neutron"} and inst[4]["type"] == "notification"
    vol = search(d.url, "--volume", VOLUME)
    assert [(e["component"], e["@timestamp"][11:19]) for e in vol] == \
        [("nova", "09:14:07"), ("cinder", "09:14:08"), ("cinder", "09:14:10")]
    out = CliRunner().invoke(main, ["search", "--instance", INSTANCE, "--volume", VOLUME, "--url", d.url])
    assert out.exit_code != 0 and "one of --request-id, --instance, --volume" in out.output
