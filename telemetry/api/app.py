"""The HTTP API application and the component that serves it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import contextlib
import logging
import socket
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from telemetry import __version__
from telemetry.api.auth import GuardMiddleware
from telemetry.api.core import router as core_router
from telemetry.api.listener import bounded_protocol
from telemetry.bounds import MAX_DEPTH
from telemetry.component import Component
from telemetry.api.gnocchi.common import PREFIX as GNOCCHI_PREFIX, error_response as gnocchi_error
from telemetry.errors import problems
from telemetry.events.backend import StoreUnavailable
from telemetry.gnocchi.models import GnocchiError
from telemetry.rules.service import RulesUnavailable
from telemetry.runtime import Runtime

log = logging.getLogger(__name__)


def routers_for(runtime: Runtime) -> list[APIRouter]:
    """The routes of the services this daemon runs: an agent serves /healthz and /metrics only."""
    from telemetry.api import actions, aodh, ceilometer, deadletters, events, gnocchi, publishers, triggers

    out = [core_router]
    if runtime.event_store is not None:
        out.append(events.router)
    if runtime.sample_store is not None:
        out.append(ceilometer.router)
    if runtime.gnocchi is not None:
        out.append(gnocchi.router)
    if runtime.ceilometer_http is not None:
        out.append(publishers.router)
    if runtime.rules is not None:
        out += [aodh.router, triggers.router]
    if runtime.actions is not None:
        out.append(actions.router)
    if runtime.dead_letters is not None:
        out.append(deadletters.router)
    if runtime.event_store is not None or runtime.sample_store is not None or runtime.rules is not None:
        from telemetry.api import ui

        out.append(ui.router)  # the console reads those stores; an agent has none to show
    return out


#: Where /docs takes swagger-ui's files from: the swagger-ui-bundle package, so nothing comes from a CDN.
DOCS_ASSETS = "/docs/assets"


def _offline_docs(app: FastAPI) -> None:
    """/docs served from swagger-ui-bundle's copy of swagger-ui: it works on a host with no internet."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="OpenStack telemetry", version=__version__, docs_url=None, redoc_url=None)
    _offline_docs(app)
    app.state.runtime = runtime
    for r in routers_for(runtime):
        app.include_router(r)
    cfg = runtime.settings.api
    app.state.auth_required = bool(cfg.tokens or cfg.keystone)  # the console's login check reads it
    app.add_middleware(GuardMiddleware, config=cfg)
    if cfg.cors_origins:  # added last, so outermost: preflights are answered without a token, as browsers send none
        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "X-Auth-Token", "Content-Type"])

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The trace goes to the log, never to the caller: it names files, settings and sometimes values.
        log.error("API %s %s failed: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
        return JSONResponse({"error_message": {"faultstring": f"internal error ({type(exc).__name__}); "
                                                              "the daemon's log has the details"}}, status_code=500)

    @app.exception_handler(RulesUnavailable)
    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error_message": {"faultstring": str(exc)}}, status_code=503)

    @app.exception_handler(GnocchiError)
    async def _gnocchi_error(_: Request, exc: GnocchiError) -> JSONResponse:
        return gnocchi_error(exc.code, exc.description)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Ceilometer and Aodh clients expect 400 with an error_message, not 422.
        errors = [{"field": path, "message": msg} for path, msg in problems(exc, skip=("body",))]
        text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        if request.url.path.startswith(GNOCCHI_PREFIX):
            return gnocchi_error(400, f"Invalid input: {text}")
        return JSONResponse({"error_message": {"faultstring": text, "errors": errors}}, status_code=400)

    @app.exception_handler(StarletteHTTPException)  # also routing's 404/405 and FastAPI's body parsing errors
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if isinstance(exc.__cause__, RecursionError):  # FastAPI's "There was an error parsing the body"
            detail = f"the body nests deeper than can be read (a record may nest {MAX_DEPTH} levels)"
        if request.url.path.startswith(GNOCCHI_PREFIX):  # gnocchiclient reads Gnocchi's error form only
            return gnocchi_error(exc.status_code, detail, exc.headers)
        return JSONResponse(
            {"error_message": {"faultstring": detail}}, status_code=exc.status_code, headers=exc.headers
        )

    return app


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return None


class ApiComponent(Component):
    name = "api"
    critical = True

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self.server: _EmbeddedServer | None = None
        self.address = ""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cfg = self.runtime.settings.api
        family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by every accepted connection: uvicorn writes a response's head and body apart, and with
        # Nagle on, a keep-alive client (gnocchiclient, aodhclient) waited out its 40 ms delayed ACK per request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((cfg.host, cfg.port))
        sock.listen(512)
        sock.setblocking(False)
        port = sock.getsockname()[1]
        scheme = "https" if cfg.tls else "http"
        self.address = f"{scheme}://{cfg.host if family == socket.AF_INET else f'[{cfg.host}]'}:{port}"
        self.runtime.api_address = self.address
        app = create_app(self.runtime)
        tls: dict[str, Any] = {}
        if cfg.tls:
            import ssl

            tls = {"ssl_certfile": cfg.tls.cert_file, "ssl_keyfile": cfg.tls.key_file}
            if cfg.tls.client_ca_file:
                tls |= {"ssl_ca_certs": cfg.tls.client_ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=2,
                                http=bounded_protocol(cfg.max_connections, cfg.header_timeout), **tls)
        self.server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]), name="api:uvicorn")
        for _ in range(200):  # wait until it accepts, so "started" means reachable
            if self.server.started or self._task.done():
                break
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()

    async def stop(self) -> None:
        if self.server and self._task:
            self.server.should_exit = True
            try:
                await asyncio.wait_for(self._task, timeout=3)
            except TimeoutError:
                self.server.force_exit = True

    def details(self) -> dict[str, Any]:
        return {"listen": self.address}
