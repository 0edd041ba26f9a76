"""Shared fixtures: sample files, free ports, the daemon as a real subprocess."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = Path(os.environ.get("TELEMETRY_SAMPLES", ROOT.parent / "shared" / "samples"))
if not SAMPLES.is_dir():
    SAMPLES = ROOT / "tests" / "samples"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    assert SAMPLES.is_dir(), f"sample inputs not found at {SAMPLES}"
    return SAMPLES


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: The start banner's API line (telemetry.cli.daemon_cmds): the port the kernel picked.
_API_LINE = re.compile(r"API: (https?://[\w.\-\[\]]+:(\d+))")


class DaemonProcess:
    """``telemetry <mode>`` as a subprocess with its own data folder.

    The API listens on port 0 unless the test names one: the daemon's start
    banner says which port it got, so no port is picked, released and then
    raced for by another test. Other listeners' addresses come from /healthz
    (``listen`` of each component), see ``listen``.
    """

    def __init__(self, tmp: Path, mode: str = "run", config: dict | None = None, env: dict | None = None) -> None:
        self.tmp = tmp
        self.port = 0
        cfg = {
            "data_dir": str(tmp / "data"),
            "api": {"port": 0},
            "sources": {"files": [{"paths": [str(tmp / "logs" / "*.log")], "fields": {"type": "openstack"}}],
                        "ceilometer": {"enabled": False},
                        # Zabbix's fixed ports would collide between daemons running at once.
                        "zabbix": {"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0"}},
        }
        for k, v in (config or {}).items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k] = {**cfg[k], **v}
            else:
                cfg[k] = v
        self.config_path = tmp / "telemetry.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.mode = mode
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._url = ""

    def start(self, wait: bool = True) -> DaemonProcess:
        self._url = ""
        self.log = open(self.tmp / f"{self.mode}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telemetry", self.mode, "-c", str(self.config_path)],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
        )
        if wait:
            self.wait_healthy()
        return self

    def _api_url(self) -> str:
        """The API's address from the start banner, once it is printed ("" before)."""
        if not self._url:
            m = _API_LINE.search(self.output())
            if m:
                self._url, self.port = m.group(1), int(m.group(2))
        return self._url

    @property
    def url(self) -> str:
        """The API's base URL; waits for the start banner when the daemon was started without waiting."""
        deadline = time.monotonic() + 20
        while not self._api_url():
            assert self.proc is not None and self.proc.poll() is None and time.monotonic() < deadline, \
                f"no API line in the daemon's output:\n{self.output()}"
            time.sleep(0.05)
        return self._url

    def wait_healthy(self, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            if not self._api_url():
                time.sleep(0.05)
                continue
            try:
                r = httpx.get(self.url + "/healthz", timeout=1)
                if r.status_code in (200, 503):
                    return r.json()
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"daemon not healthy in {timeout}s ({last}):\n{self.output()}")

    def listen(self, component: str) -> str:
        """Where ``component`` listens (``host:port``, or ``host:port/udp``), from /healthz."""
        health = httpx.get(self.url + "/healthz", timeout=5).json()
        return str(health["components"][component]["listen"])

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.tmp / f"{self.mode}.log").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator:
    started: list[DaemonProcess] = []

    def make(mode: str = "run", config: dict | None = None, env: dict | None = None, sub: str = "") -> DaemonProcess:
        folder = tmp_path / (sub or f"d{len(started)}")
        folder.mkdir(parents=True, exist_ok=True)
        d = DaemonProcess(folder, mode, config, env)
        started.append(d)
        return d

    yield make
    for d in started:
        d.kill()
