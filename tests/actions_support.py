"""Real loopback receivers and an in-process dispatcher for the actions tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any

import uvicorn

from telemetry.actions.dispatch import ActionDispatcher
from telemetry.bus import OutMessage
from telemetry.bus.memory import MemoryBus
from telemetry.config import Settings
from telemetry.runtime import Runtime
from telemetry.models import AlarmTransition


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def respond(send: Any, status: int, doc: Any, headers: dict[str, str]) -> None:
    hdrs = [(b"content-type", b"application/json")] + [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": json.dumps(doc).encode()})


class _Quiet(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


class Receiver:
    """An HTTP server on a loopback port that records every request and answers from a script.

    ``script`` is a list of responses for the first requests (a status code, or
    ``(status, headers)``); after it runs out every request gets ``default``.
    """

    def __init__(self, script: list[Any] | None = None, default: int = 200, port: int = 0,
                 reply: dict[str, Any] | None = None, reply_headers: dict[str, str] | None = None) -> None:
        self.script = list(script or [])
        self.default = default
        self.port = port
        self.reply = reply or {}
        self.reply_headers = reply_headers or {}
        self.requests: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self.server: _Quiet | None = None

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        req = {"method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode(),
               "headers": headers, "body": body, "at": time.time()}
        try:
            req["json"] = json.loads(body) if body else None
        except ValueError:
            req["json"] = None
        self.requests.append(req)
        self._arrived.set()
        spec = self.script.pop(0) if self.script else self.default
        status, extra = (spec, {}) if isinstance(spec, int) else spec
        await respond(send, status, self.reply, {**self.reply_headers, **extra})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Receiver:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.server = _Quiet(uvicorn.Config(self.app, interface="asgi3", log_level="error", lifespan="off", access_log=False))
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self.server:
            self.server.should_exit = True
            await asyncio.wait_for(self._task, 5)

    async def wait(self, n: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"expected {n} requests, got {len(self.requests)}")
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return self.requests


def transition(**fields: Any) -> AlarmTransition:
    base: dict[str, Any] = {
        "alarm_id": "a-1", "alarm_name": "cpu_high", "severity": "critical", "previous": "ok", "current": "alarm",
        "reason": "Transition to alarm due to 3 samples outside threshold, most recent: 97.5",
        "reason_data": {"type": "threshold", "disposition": "outside", "count": 3, "most_recent": 97.5},
        "timestamp": "2026-03-02T10:00:00+00:00", "actions": [], "repeat_actions": False,
        "alarm_type": "threshold", "labels": {"host": "compute-1", "role": "compute", "resource_id": "vm-1",
                                              "meter": "cpu_util"},
    }
    base.update(fields)
    return AlarmTransition(**base)


TEST_ACTIONS = {"allowed_targets": ["127.0.0.0/8"], "backoff_initial": 0.05, "backoff_max": 0.2, "max_attempts": 4,
                "timeout": 2, "inhibit": None}


class Harness:
    """The dispatcher on a memory bus with its own data folder; stop/start keeps the folder (a restart)."""

    def __init__(self, data_dir: Path, bus: MemoryBus | None = None, api: dict[str, Any] | None = None,
                 **actions: Any) -> None:
        self.settings = Settings(data_dir=data_dir, actions={**TEST_ACTIONS, **actions}, api=api or {})
        self.bus = bus or MemoryBus()
        self.runtime = Runtime(settings=self.settings, mode="server", bus=self.bus, data_dir=data_dir)
        self.d: ActionDispatcher | None = None

    async def start(self) -> Harness:
        self.d = ActionDispatcher(self.runtime)
        await self.d.start()
        return self

    async def stop(self) -> None:
        if self.d is not None:
            await self.d.stop()
            self.d = None

    async def publish(self, *records: AlarmTransition) -> None:
        await self.bus.publish("alarm_transitions", [OutMessage(value=r.to_json()) for r in records])

    async def settle(self, timeout: float = 5.0) -> None:
        """Until the bus is drained and nothing in the outbox is due now."""
        deadline = time.monotonic() + timeout
        assert self.d is not None
        while time.monotonic() < deadline:
            due = self.d.outbox.due(time.time() + 0.01, 1)
            if self.bus.depth("alarm_transitions", "actions") == 0 and not due and not self.d.inflight \
                    and not self.d.consumer._inflight:  # type: ignore[union-attr]
                return
            await asyncio.sleep(0.02)
        raise AssertionError("actions did not settle")

    async def drained(self, timeout: float = 8.0) -> None:
        """Until nothing more can be sent: the bus is drained, nothing is in flight and the outbox
        holds no pending item at all (not even one due later), so a count taken now is final."""
        deadline = time.monotonic() + timeout
        assert self.d is not None
        while time.monotonic() < deadline:
            if self.bus.depth("alarm_transitions", "actions") == 0 and not self.d.inflight \
                    and not self.d.consumer._inflight and self.d.outbox.pending() == 0:  # type: ignore[union-attr]
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"actions still had {self.d.outbox.pending()} pending items")

    def log(self, **kw: Any) -> list[Any]:
        assert self.d is not None
        return self.d.outbox.deliveries(1000, **kw)


class KeystoneTrusts:
    """Keystone v3 ``POST /v3/auth/tokens`` as the trust flow uses it: password authentication scoped to a
    project, or to a trust (``OS-TRUST:trust``) whose trustee must be the authenticating user.

    ``users``: name -> password; ``trusts``: id -> (trustee, trustor's project). Answers as Keystone does: 401 for
    bad credentials, 404 for an unknown trust, 403 for a trust of another trustee, 400 for two scopes at once.
    """

    def __init__(self, users: dict[str, str], trusts: dict[str, tuple[str, str]]) -> None:
        self.users, self.trusts = users, trusts
        self.requests: list[dict[str, Any]] = []
        self.issued: dict[str, dict[str, Any]] = {}  # token -> its body, for the Heat double to check

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        doc = json.loads(body or b"{}")
        self.requests.append({"path": scope["path"], "query": scope["query_string"].decode(), "json": doc})
        await respond(send, *self.issue(scope["method"], scope["path"], doc))

    def issue(self, method: str, path: str, doc: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        def error(code: int, message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
            return code, {"error": {"code": code, "message": message}}, {}

        if (method, path) != ("POST", "/v3/auth/tokens"):
            return error(404, "not found")
        auth = doc.get("auth", {})
        identity, scope = auth.get("identity", {}), auth.get("scope", {})
        user = identity.get("password", {}).get("user", {})
        if identity.get("methods") != ["password"] or user.get("domain", {}).get("name") != "Default" \
                or self.users.get(user.get("name", "")) != user.get("password"):
            return error(401, "The request you have made requires authentication.")
        if len(scope) > 1:
            return error(400, "Only one scope may be given")
        expires = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + 3600))
        token: dict[str, Any] = {"methods": ["password"], "expires_at": expires, "issued_at": expires,
                                 "user": {"id": f"{user['name']}-id", "name": user["name"], "domain": {"id": "default"}},
                                 "roles": [{"id": "r1", "name": "member"}]}
        if "OS-TRUST:trust" in scope:
            trust_id = scope["OS-TRUST:trust"].get("id", "")
            if trust_id not in self.trusts:
                return error(404, f"Could not find trust: {trust_id}.")
            trustee, project = self.trusts[trust_id]
            if trustee != user["name"]:
                return error(403, "You are not authorized to perform the requested action.")
            token["OS-TRUST:trust"] = {"id": trust_id, "impersonation": False, "trustee_user": {"id": f"{trustee}-id"},
                                       "trustor_user": {"id": "owner-id"}}
            token["project"] = {"id": project, "name": project, "domain": {"id": "default"}}
        elif "project" in scope:
            project = scope["project"]["name"]
            token["project"] = {"id": project, "name": project, "domain": {"id": "default"}}
        value = f"tok-{len(self.issued) + 1}"
        self.issued[value] = token
        return 201, {"token": token}, {"X-Subject-Token": value}

    async def start(self) -> KeystoneTrusts:
        self._receiver = Receiver()
        self._receiver.app = self.app  # type: ignore[method-assign]
        await self._receiver.start()
        self.url = self._receiver.url + "/v3"
        return self

    async def stop(self) -> None:
        await self._receiver.stop()
