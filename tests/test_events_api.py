"""Events and notifications written through a running daemon come back from the API and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import DaemonProcess
from store_support import BACKENDS, drop_schemas, pg_database, pg_schema_url  # noqa: F401 (fixture)

from tests.support import wait_until

from telemetry.cli import main

TOKEN = "events-s3cret"
READER = "events-reader"
READ = {"X-Auth-Token": READER}
NOW = datetime.now(timezone.utc).replace(microsecond=0)
REQ = "req-7d1e2a40-5b3c-4f0e-9a55-0c2d6b3e8f11"


def line(minutes_ago: float, level: str, message: str, component: str = "nova", host: str = "cn01",
         request_id: str | None = REQ, **extra: object) -> dict:
    """An event as the parse stage publishes it for an oslo.log line."""
    return {"@timestamp": (NOW - timedelta(minutes=minutes_ago)).isoformat(), "host": host, "component": component,
            "type": "openstack", "level": level, "logger": f"{component}.manager", "pid": 31842,
            "request_id": request_id, "message": message, **extra}


def build_events() -> list[dict]:
    return [
        line(30, "INFO", "Claim successful on node cn01.example.org", instance_id="3f6c2b1e"),
        line(29, "INFO", "Creating image", instance_id="3f6c2b1e"),
        line(28, "INFO", "Took 14.21 seconds to build instance.", instance_id="3f6c2b1e"),
        line(27.5, "INFO", "Allocated port for instance", component="neutron", host="net01"),
        line(20, "ERROR", "Instance failed to spawn: libvirt.libvirtError: internal error", request_id="req-c0ffee00"),
        line(10, "INFO", "GET /v2/images HTTP/1.1 status: 500", component="glance", host="cc01", request_id="req-g1",
             status=500),
        line(9, "WARNING", "GET /v2/images HTTP/1.1 status: 404", component="glance", host="cc01", request_id="req-g2",
             status=404),
    ]


# Built again when the daemon fixture starts, so relative time windows (now-12m) hold
# however long the tests collected before this module took.
EVENTS = build_events()


def notifications(samples_dir: Path) -> list[dict]:
    """The sample oslo envelopes, re-timed into the last hour (the default ttl is 7 days)."""
    out = []
    for i, path in enumerate(sorted((samples_dir / "notifications").glob("*.json"))):
        envelope = json.loads(path.read_text())
        msg = json.loads(envelope["oslo.message"])
        msg["timestamp"] = (NOW - timedelta(minutes=40 - i)).isoformat()
        if msg["event_type"] == "compute.instance.create.end":
            msg["timestamp"] = (NOW - timedelta(minutes=27)).isoformat()
        out.append({"oslo.version": "2.0", "oslo.message": json.dumps(msg)})
    return out


@pytest.fixture(scope="module", params=BACKENDS)
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           samples_dir: Path) -> Iterator[DaemonProcess]:
    """A daemon whose event store is embedded SQLite, then one whose store is in PostgreSQL."""
    global NOW
    NOW = datetime.now(timezone.utc).replace(microsecond=0)
    EVENTS[:] = build_events()
    config: dict = {"api": {"tokens": [TOKEN, {"token": READER, "scope": "read"}]}}
    schemas = []
    if request.param == "postgresql":
        pg = request.getfixturevalue("pg_database")
        url, schema = pg_schema_url(pg)
        schemas.append(schema)
        config["store"] = {"events": {"url": url}}
    d = DaemonProcess(tmp_path_factory.mktemp("events-api"), "run", config)
    d.start()
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = httpx.post(d.url + "/v1/events", json=EVENTS, headers=auth)
        assert r.status_code == 202, r.text
        r = httpx.post(d.url + "/v1/events", json=notifications(samples_dir), headers=auth)
        assert r.status_code == 202 and r.json() == {"accepted": 6}, r.text
        total = len(EVENTS) + 6
        where = httpx.get(d.url + "/healthz", timeout=5).json()["components"]["stage.events"]["path"]
        assert where.startswith("postgresql://" if request.param == "postgresql" else "/"), where
        deadline = time.monotonic() + 10
        while len(httpx.get(d.url + "/v1/events", params={"limit": 1000}, headers=READ).json()) < total:
            assert time.monotonic() < deadline, d.output()
            time.sleep(0.05)
        yield d
    finally:
        d.stop()
        if schemas:
            drop_schemas(request.getfixturevalue("pg_database"), schemas)


def api(d: DaemonProcess, **params: object) -> httpx.Response:
    return httpx.get(d.url + "/v1/events", params=params, headers=READ)


def cli(d: DaemonProcess, *args: str) -> str:
    result = CliRunner().invoke(main, ["search", *args, "--url", d.url, "--token", READER], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


QUERIES = [
    ("component:glance", {"GET /v2/images HTTP/1.1 status: 500", "GET /v2/images HTTP/1.1 status: 404"}),
    ("type:openstack AND component:glance", {"GET /v2/images HTTP/1.1 status: 500",
                                            "GET /v2/images HTTP/1.1 status: 404"}),
    ("level:ERROR AND component:nova", {"Instance failed to spawn: libvirt.libvirtError: internal error",
                                        "No valid host was found. There are not enough hosts available."}),
    ("event_type:compute.instance.create.end", {"compute.instance.create.end"}),
    ('"failed to spawn"', {"Instance failed to spawn: libvirt.libvirtError: internal error"}),
    ("component:neu*", {"Allocated port for instance", "port.create.end"}),
    ("status:[500 TO 599]", {"GET /v2/images HTTP/1.1 status: 500"}),
    ("component:glance AND NOT status:500", {"GET /v2/images HTTP/1.1 status: 404"}),
    ("(level:WARNING OR level:ERROR) AND host:cc01", {"GET /v2/images HTTP/1.1 status: 404",
                                                    "No valid host was found. There are not enough hosts available."}),
    ("@timestamp:[now-12m TO now] AND component:glance", {"GET /v2/images HTTP/1.1 status: 500",
                                                          "GET /v2/images HTTP/1.1 status: 404"}),
    ("spawn", {"Instance failed to spawn: libvirt.libvirtError: internal error"}),
]


@pytest.mark.parametrize(("query", "expected"), QUERIES, ids=[q for q, _ in QUERIES])
def test_each_query_form_through_api_and_cli(daemon: DaemonProcess, query: str, expected: set[str]) -> None:
    r = api(daemon, q=query, limit=100)
    assert r.status_code == 200, r.text
    assert {e["message"] for e in r.json()} == expected
    via_cli = [json.loads(x) for x in cli(daemon, query, "-f", "json", "--since", "2h").splitlines()]
    assert {e["message"] for e in via_cli} == expected


def test_list_is_newest_first_and_limited(daemon: DaemonProcess) -> None:
    rows = api(daemon, limit=3).json()
    assert len(rows) == 3
    assert [r["@timestamp"] for r in rows] == sorted((r["@timestamp"] for r in rows), reverse=True)
    recent = api(daemon, start="-15m").json()
    assert {r["message"] for r in recent} == {"GET /v2/images HTTP/1.1 status: 500", "GET /v2/images HTTP/1.1 status: 404"}
    absolute = api(daemon, start=(NOW - timedelta(minutes=10, seconds=1)).isoformat(),
                   end=(NOW - timedelta(minutes=9, seconds=30)).isoformat()).json()
    assert [r["message"] for r in absolute] == ["GET /v2/images HTTP/1.1 status: 500"]


def test_bad_query_is_a_400_naming_the_position(daemon: DaemonProcess) -> None:
    r = api(daemon, q="level:ERROR AND (component:nova")
    assert r.status_code == 400
    assert "at position 17" in r.json()["error_message"]["faultstring"]
    assert api(daemon, start="yesterday").status_code == 400
    result = CliRunner().invoke(main, ["search", "status:[500 599]", "--url", daemon.url, "--token", READER])
    assert result.exit_code == 1 and "position 13" in result.output


def test_histogram(daemon: DaemonProcess) -> None:
    r = httpx.get(daemon.url + "/v1/events/histogram",
                  params={"q": "component:glance", "interval": "1m", "start": "-15m", "end": "now"}, headers=READ)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["interval"] == 60 and body["total"] == 2
    assert 15 <= len(body["buckets"]) <= 16 and sum(b["count"] for b in body["buckets"]) == 2
    same = api(daemon, q="component:glance", interval="1m", start="-15m", end="now").json()
    assert same["total"] == 2


def test_request_id_shows_the_path_across_services_in_time_order(daemon: DaemonProcess) -> None:
    out = cli(daemon, "--request-id", REQ, "-f", "json")
    path = [json.loads(x) for x in out.splitlines()]
    assert [(e["component"], e["message"]) for e in path] == [
        ("nova", "Claim successful on node cn01.example.org"),
        ("nova", "Creating image"),
        ("nova", "Took 14.21 seconds to build instance."),
        ("neutron", "Allocated port for instance"),
        ("nova", "compute.instance.create.end"),  # the notification, by its _context_request_id
    ]
    table = cli(daemon, "--request-id", REQ)
    assert "cn01" in table and "net01" in table and table.index("Claim successful") < table.index("Creating image")


def test_posting_needs_the_token_and_valid_records(daemon: DaemonProcess) -> None:
    assert httpx.post(daemon.url + "/v1/events", json=EVENTS[:1]).status_code == 401
    r = httpx.post(daemon.url + "/v1/events", json=[{"message": "ok"}, {"@timestamp": "not a time"}],
                   headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400 and r.json()["error_message"]["faultstring"].startswith("[1].@timestamp")


def test_follow_prints_new_matches(daemon: DaemonProcess) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemetry", "search", "component:keystone", "--follow", "--interval", "0.2",
         "-f", "json", "--url", daemon.url, "--token", READER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        fresh = {**line(0, "ERROR", "Authorization failed for token", component="keystone", host="cc01"),
                 "@timestamp": datetime.now(timezone.utc).isoformat()}
        r = httpx.post(daemon.url + "/v1/events", json=[fresh], headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 202
        got = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        assert got["message"] == "Authorization failed for token"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def _duplicates(daemon: DaemonProcess) -> float:
    for line in httpx.get(daemon.url + "/metrics").text.splitlines():
        if line.startswith("telemetry_events_duplicates_total "):
            return float(line.split()[1])
    return 0.0


def test_redelivered_records_are_stored_once(daemon: DaemonProcess, samples_dir: Path) -> None:
    before, dups = len(api(daemon, limit=1000).json()), _duplicates(daemon)
    again = EVENTS + notifications(samples_dir)
    r = httpx.post(daemon.url + "/v1/events", json=again, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 202
    # a positive signal that the store saw every copy: each counted as a duplicate, none stored
    wait_until(lambda: _duplicates(daemon) - dups >= len(again), 10, "the copies to reach the store")
    assert _duplicates(daemon) - dups == len(again)
    assert len(api(daemon, limit=1000).json()) == before


def test_metrics_of_the_names_asked_for_alone(daemon: DaemonProcess) -> None:
    """``/metrics?name[]=...`` (Prometheus's own handler's filter): a poller of one counter gets those
    series alone, HELP and TYPE included; no name, everything."""
    names = ["telemetry_events_stored_total", "telemetry_events_duplicates_total"]
    text = httpx.get(daemon.url + "/metrics", params={"name[]": names}).text
    samples = [line.split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert sorted(samples) == sorted(names)
    assert "# TYPE telemetry_events_stored_total counter" in text
    everything = httpx.get(daemon.url + "/metrics").text
    assert len(everything) > 20 * len(text) and "telemetry_events_stored_total" in everything
    assert httpx.get(daemon.url + "/metrics", params={"name[]": "telemetry_no_such_total"}).text == ""
