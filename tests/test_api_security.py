"""Who may call the API and what it reads before knowing (issue 20): tokens, scopes, body size, CORS, errors."""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import httpx
import psutil
import pytest

from telemetry.api.app import create_app
from telemetry.bus import MemoryBus
from telemetry.config import Settings
from telemetry.config.loader import ConfigError, validate
from telemetry.runtime import Runtime

READ, WRITE, ADMIN = "r3ad-token", "wr1te-token", "adm1n-token"


def _sha(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _app(tmp_path: Path, **api):
    settings = Settings(data_dir=tmp_path, api=api)
    rt = Runtime(settings=settings, mode="server", bus=MemoryBus(), data_dir=tmp_path)
    return create_app(rt)


@pytest.fixture
async def client(tmp_path: Path):
    app = _app(tmp_path, tokens=[{"sha256": _sha(READ)[7:], "scope": "read", "name": "grafana"},
                                 {"token": WRITE, "scope": "write"}, _sha(ADMIN)], max_body_bytes=4096)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail in /etc/telemetry.yaml line 3")

    @app.post("/v1/echo")
    async def echo(body: dict) -> dict:
        return body

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://t") as c:
        yield c


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_reads_need_a_token_of_any_scope_and_health_stays_open(client) -> None:
    assert (await client.get("/healthz")).status_code in (200, 503)
    assert (await client.get("/metrics")).status_code == 200
    r = await client.get("/openapi.json")
    assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
    assert (await client.get("/openapi.json", headers=_bearer("wrong"))).status_code == 401
    for token in (READ, WRITE, ADMIN):
        assert (await client.get("/openapi.json", headers=_bearer(token))).status_code == 200
    assert (await client.get("/openapi.json", headers={"X-Auth-Token": READ})).status_code == 200
    assert (await client.get("/openapi.json", auth=("ceilometer", READ))).status_code == 200
    assert (await client.get("/openapi.json", auth=("ceilometer", "nope"))).status_code == 401


async def test_scopes_nest_read_write_admin(client) -> None:
    body = {"a": 1}
    r = await client.post("/v1/echo", json=body, headers=_bearer(READ))
    assert r.status_code == 403 and "scope is read" in r.json()["error_message"]["faultstring"]
    assert (await client.post("/v1/echo", json=body, headers=_bearer(WRITE))).json() == body
    assert (await client.post("/v1/echo", json=body, headers=_bearer(ADMIN))).json() == body
    # The allow-list decides where alarms may send: admin only (the route itself is not mounted here: 404 past auth).
    assert (await client.put("/v1/actions/allowlist", json={"targets": []}, headers=_bearer(WRITE))).status_code == 403
    assert (await client.put("/v1/actions/allowlist", json={"targets": []}, headers=_bearer(ADMIN))).status_code == 404


async def test_bodies_over_the_limit_get_413_and_unauthenticated_ones_401_unread(client) -> None:
    big = b'{"a": "' + b"x" * 10_000 + b'"}'
    r = await client.post("/v1/echo", content=big, headers={**_bearer(WRITE), "Content-Type": "application/json"})
    assert r.status_code == 413 and "api.max_body_bytes (4096)" in r.text

    async def chunks():  # no Content-Length: the limit applies to what arrives
        yield b'{"a": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'
    r = await client.post("/v1/echo", content=chunks(), headers={**_bearer(WRITE), "Content-Type": "application/json"})
    assert r.status_code == 413

    read: list[int] = []

    async def counted():
        for _ in range(3):
            read.append(1)
            yield b"x" * 1000
    r = await client.post("/v1/echo", content=counted(), headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    assert len(read) <= 1, "the body was read before the token was checked"


async def test_no_stack_trace_and_no_cors_by_default(client) -> None:
    r = await client.get("/boom", headers=_bearer(READ))
    assert r.status_code == 500 and "RuntimeError" in r.text
    assert "secret detail" not in r.text and "Traceback" not in r.text and "telemetry.yaml" not in r.text
    r = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    r = await client.options("/v2/alarms", headers={"Origin": "https://evil.example",
                                                   "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


async def test_open_paths_with_a_trailing_slash_open_what_is_under_them(tmp_path: Path) -> None:
    app = _app(tmp_path, tokens=[_sha(ADMIN)], open_paths=["/healthz", "/docs", "/docs/", "/openapi.json"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/docs")).status_code == 200
        assert (await c.get("/docs/assets/swagger-ui.css")).status_code == 200
        assert (await c.get("/openapi.json")).status_code == 200
        assert (await c.get("/metrics")).status_code == 401  # no longer listed
        assert (await c.get("/docsx")).status_code == 401


async def test_cors_only_for_the_configured_origins(tmp_path: Path) -> None:
    app = _app(tmp_path, cors_origins=["https://console.example"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        ok = await c.options("/v2/alarms", headers={"Origin": "https://console.example",
                                                    "Access-Control-Request-Method": "POST"})
        assert ok.headers["access-control-allow-origin"] == "https://console.example"
        bad = await c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in bad.headers


def test_token_config_forms_and_mistakes() -> None:
    s = validate({"api": {"tokens": ["plain", _sha("x"), {"sha256": _sha("y")[7:].upper(), "scope": "read"}]}})
    assert [t.scope for t in s.api.tokens] == ["admin", "admin", "read"]
    assert s.api.tokens[1].digest() == hashlib.sha256(b"x").digest()
    assert s.api.tokens[2].digest() == hashlib.sha256(b"y").digest()
    with pytest.raises(ConfigError, match=r"api\.tokens\[0\].*64 hex digits"):
        validate({"api": {"tokens": ["sha256:abc"]}})
    with pytest.raises(ConfigError, match=r"api\.tokens\[0\].*exactly one"):
        validate({"api": {"tokens": [{"sha256": _sha("x")[7:], "token": "x"}]}})
    with pytest.raises(ConfigError, match=r"api\.tokens\[0\]\.scope"):
        validate({"api": {"tokens": [{"token": "x", "scope": "root"}]}})


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def test_a_100mb_anonymous_post_is_refused_unread_and_the_daemon_keeps_answering(daemon_factory) -> None:
    d = daemon_factory(config={"api": {"tokens": [_sha(WRITE)]}}).start()
    assert d.proc is not None
    host, port = d.url.split("//")[1].split(":")
    start_rss = _rss(d.proc.pid)
    for declared in (True, False):
        for _ in range(3):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                head = (b"POST /v2/alarms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        + (b"Content-Length: 104857600\r\n" if declared else b"Transfer-Encoding: chunked\r\n")
                        + b"\r\n")
                s.sendall(head)
                chunk = b"x" * (1 << 20)
                sent = 0
                try:
                    while sent < 100:
                        s.sendall(chunk if declared else b"100000\r\n" + chunk + b"\r\n")
                        sent += 1
                except OSError:
                    pass  # the daemon answered and closed: what we want
                answer = s.recv(4096)
                assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
            t0 = time.monotonic()
            assert httpx.get(d.url + "/healthz", timeout=5).status_code in (200, 503)
            assert time.monotonic() - t0 < 1.0
    assert _rss(d.proc.pid) - start_rss < 100 << 20
    # An ordinary client still sending its body reads the answer (the daemon lingers), not a reset.
    for _ in range(5):
        assert httpx.post(d.url + "/v2/alarms", content=b"x" * (11 << 20), headers=_bearer(WRITE)).status_code == 413
        assert httpx.post(d.url + "/v2/alarms", content=b"x" * (11 << 20)).status_code == 401

        def chunks():
            for _ in range(11):
                yield b"x" * (1 << 20)
        assert httpx.post(d.url + "/v2/alarms", content=chunks(), headers=_bearer(WRITE)).status_code == 413


def test_the_api_serves_https_and_can_require_client_certificates(daemon_factory, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = tmp_path / "api.pem", tmp_path / "api.key", tmp_path / "ca.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # httpx (here and in DaemonProcess) trusts our CA
    d = daemon_factory(config={"api": {"tokens": [_sha(READ)], "open_paths": ["/healthz"],
                                       "tls": {"cert_file": str(cert), "key_file": str(key)}}}).start()
    assert d.url.startswith("https://127.0.0.1:")
    verified = ssl.create_default_context(cafile=str(ca_file))
    assert httpx.get(d.url + "/v2/alarms", headers=_bearer(READ), verify=verified).status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(d.url.replace("https://", "http://") + "/healthz", timeout=5)
    stranger = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    trustme.CA().configure_trust(stranger)
    with pytest.raises(httpx.ConnectError):  # a client trusting another CA refuses the certificate
        httpx.get(d.url + "/healthz", verify=stranger, timeout=5)
    d.stop()

    client_cert = ca.issue_cert("telemetry-client")
    mutual = daemon_factory(config={"api": {"tls": {"cert_file": str(cert), "key_file": str(key),
                                                    "client_ca_file": str(ca_file)}}})
    mutual.start(wait=False)
    with_cert = ssl.create_default_context(cafile=str(ca_file))
    client_cert.configure_cert(with_cert)
    deadline = time.monotonic() + 20
    while True:
        try:
            assert httpx.get(mutual.url + "/healthz", verify=with_cert, timeout=2).status_code in (200, 503)
            break
        except httpx.ConnectError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    with pytest.raises(httpx.HTTPError):
        httpx.get(mutual.url + "/healthz", verify=verified, timeout=5)
