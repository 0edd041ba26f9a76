"""Keystone tokens, validated per keystonemiddleware's contract against a Keystone double, scope data per project.

The double implements what auth_token uses of Keystone v3: ``POST
/v3/auth/tokens`` (the service's own password authentication, answered with
``X-Subject-Token``) and ``GET /v3/auth/tokens`` (``X-Auth-Token``: the
service token, ``X-Subject-Token``: the caller's; 200 with the token's
project, user and roles, 404 for an unknown token, 401 for a bad service token).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from telemetry.config import Settings
from telemetry.daemon import Daemon

SERVICE_TOKEN = "svc-token-1"
EXPIRES = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
USERS = {
    "tok-a": ("proj-a", "alice", ["member"]),
    "tok-b": ("proj-b", "bob", ["member"]),
    "tok-reader": ("proj-a", "rita", ["reader"]),
    "tok-admin": ("proj-admin", "root", ["admin", "member"]),
}


class KeystoneDouble:
    def __init__(self) -> None:
        self.validations = 0
        self.up = True
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                user = body["auth"]["identity"]["password"]["user"]
                if (user["name"], user["password"]) != ("telemetry", "svc-pass"):
                    self._send(401, {"error": {"code": 401}})
                    return
                self._send(201, {"token": {"expires_at": EXPIRES}}, {"X-Subject-Token": SERVICE_TOKEN})

            def do_GET(self) -> None:
                if not double.up:
                    self._send(500, {"error": {"code": 500}})
                    return
                if self.headers.get("x-auth-token") != SERVICE_TOKEN:
                    self._send(401, {"error": {"code": 401}})
                    return
                double.validations += 1
                found = USERS.get(self.headers.get("x-subject-token", ""))
                if found is None:
                    self._send(404, {"error": {"code": 404, "message": "Could not find token"}})
                    return
                project, user, roles = found
                self._send(200, {"token": {"expires_at": EXPIRES, "project": {"id": project, "name": project},
                                           "user": {"id": f"{user}-id", "name": user},
                                           "roles": [{"name": r, "id": r} for r in roles]}})

            def log_message(self, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v3"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def keystone() -> Iterator[KeystoneDouble]:
    k = KeystoneDouble()
    yield k
    k.server.shutdown()


def _as(token: str) -> dict[str, str]:
    return {"X-Auth-Token": token}


def _alarm(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "threshold", "threshold_rule": {"meter_name": "cpu_util", "threshold": 90}, **extra}


def _sample(resource: str) -> list[dict[str, Any]]:
    return [{"counter_name": "cpu_util", "counter_type": "gauge", "counter_unit": "%", "counter_volume": 5,
             "resource_id": resource, "timestamp": (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()}]


async def test_a_project_token_sees_only_its_project_and_admins_see_all(tmp_path: Path, keystone) -> None:
    settings = Settings(data_dir=tmp_path / "data", api={"port": 0, "keystone": {
                            "auth_url": keystone.url, "username": "telemetry", "password": "svc-pass",
                            "project_name": "service"}},
                        rules={"paths": [str(tmp_path / "none")]},
                        sources={"files": [], "host_metrics": {"enabled": False}, "ceilometer": {"enabled": False}})
    daemon = Daemon(settings, mode="run")
    rt = await daemon.start()
    try:
        async with httpx.AsyncClient(base_url=rt.api_address, timeout=20) as c:
            assert (await c.get("/v2/alarms")).status_code == 401
            assert (await c.get("/v2/alarms", headers=_as("nobody"))).status_code == 401
            # Alarms: created in the token's project, whatever the body claims.
            a = await c.post("/v2/alarms", json=_alarm("a-alarm", project_id="proj-b"), headers=_as("tok-a"))
            assert a.status_code == 201, a.text
            assert a.json()["project_id"] == "proj-a" and a.json()["user_id"] == "alice-id"
            b = await c.post("/v2/alarms", json=_alarm("b-alarm"), headers=_as("tok-b"))
            assert b.status_code == 201 and b.json()["project_id"] == "proj-b"
            aid, bid = a.json()["alarm_id"], b.json()["alarm_id"]
            seen = [x["alarm_id"] for x in (await c.get("/v2/alarms", headers=_as("tok-a"))).json()]
            assert seen == [aid]
            for call in (c.get(f"/v2/alarms/{bid}", headers=_as("tok-a")),
                         c.get(f"/v2/alarms/{bid}/history", headers=_as("tok-a")),
                         c.put(f"/v2/alarms/{bid}", json=_alarm("stolen"), headers=_as("tok-a")),
                         c.put(f"/v2/alarms/{bid}/state", json="alarm", headers=_as("tok-a")),
                         c.delete(f"/v2/alarms/{bid}", headers=_as("tok-a"))):
                assert (await call).status_code == 404
            assert {x["alarm_id"] for x in (await c.get("/v2/alarms", headers=_as("tok-admin"))).json()} >= {aid, bid}
            # A reader of project A reads A's alarms and creates nothing.
            assert [x["alarm_id"] for x in (await c.get("/v2/alarms", headers=_as("tok-reader"))).json()] == [aid]
            assert (await c.post("/v2/alarms", json=_alarm("r"), headers=_as("tok-reader"))).status_code == 403
            # Meters, samples and resources: stored under the token's project, read within it.
            for token, resource in (("tok-a", "vm-a"), ("tok-b", "vm-b")):
                r = await c.post("/v2/meters/cpu_util", json=_sample(resource), headers=_as(token))
                assert r.status_code == 201, r.text

            async def resources(token: str) -> set[str]:
                return {x["resource_id"] for x in (await c.get("/v2/resources", headers=_as(token))).json()}
            deadline = time.monotonic() + 20
            while (await resources("tok-admin")) < {"vm-a", "vm-b"}:
                assert time.monotonic() < deadline, "the samples were not stored"
                await asyncio.sleep(0.2)
            assert await resources("tok-a") == {"vm-a"}
            assert {x["resource_id"] for x in (await c.get("/v2/meters", headers=_as("tok-b"))).json()} == {"vm-b"}
            assert {x["resource_id"] for x in (await c.get("/v2/samples", headers=_as("tok-a"))).json()} == {"vm-a"}
            assert (await c.get("/v2/resources/vm-b", headers=_as("tok-a"))).status_code == 404
            stats = (await c.get("/v2/meters/cpu_util/statistics", headers=_as("tok-a"))).json()
            assert stats and stats[0]["count"] == 1
            # Events: the operator's door is closed to projects; searches see their own project's events.
            now = datetime.now(timezone.utc).isoformat()
            events = [{"@timestamp": now, "message": "for a", "project_id": "proj-a"},
                      {"@timestamp": now, "message": "for b", "project_id": "proj-b"}]
            assert (await c.post("/v1/events", json=events, headers=_as("tok-a"))).status_code == 403
            assert (await c.post("/v1/events", json=events, headers=_as("tok-admin"))).status_code == 202
            deadline = time.monotonic() + 20
            while len((await c.get("/v1/events", headers=_as("tok-admin"))).json()) < 2:
                assert time.monotonic() < deadline, "the events were not stored"
                await asyncio.sleep(0.2)
            mine = (await c.get("/v1/events", params={"q": "message:for"}, headers=_as("tok-a"))).json()
            assert [e["message"] for e in mine] == ["for a"]
            # Operator endpoints span every project.
            assert (await c.get("/v1/actions/deliveries", headers=_as("tok-a"))).status_code == 403
            assert (await c.get("/v1/actions/deliveries", headers=_as("tok-admin"))).status_code == 200
            # The Gnocchi API is not divided by project: a project token is refused there, an admin is not.
            assert (await c.get("/gnocchi/v1/resource/generic", headers=_as("tok-a"))).status_code == 403
            assert (await c.get("/gnocchi/v1/resource/generic", headers=_as("tok-admin"))).status_code == 200
            # Validated once per token, then cached.
            before = keystone.validations
            for _ in range(5):
                assert (await c.get("/v2/alarms", headers=_as("tok-a"))).status_code == 200
            assert keystone.validations == before
            # A Keystone that cannot answer is a 503 for a token not yet known, never an open door.
            keystone.up = False
            r = await c.get("/v2/alarms", headers=_as("tok-unknown"))
            assert r.status_code == 503 and "Keystone" in r.text
    finally:
        await daemon.stop()
