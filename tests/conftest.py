"""Shared fixtures: sample files, free ports, the daemon as a real subprocess."""

from __future__ import annotations

import os
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


class DaemonProcess:
    """``telemetry <mode>`` as a subprocess with its own data folder and port."""

    def __init__(self, tmp: Path, mode: str = "run", config: dict | None = None, env: dict | None = None) -> None:
        self.tmp = tmp
        self.port = free_port()
        cfg = {
            "data_dir": str(tmp / "data"),
            "api": {"port": self.port},
            "sources": {"files": [{"paths": [str(tmp / "logs" / "*.log")], "fields": {"type": "openstack"}}],
                        "ceilometer": {"enabled": False},
                        # Zabbix's fixed ports would collide between daemons running at once.
                        "zabbix": {"trapper": f"127.0.0.1:{free_port()}", "passive": f"127.0.0.1:{free_port()}"}},
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
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> "DaemonProcess":
        self.log = open(self.tmp / f"{self.mode}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telemetry", self.mode, "-c", str(self.config_path)],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
        )
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            try:
                r = httpx.get(self.url + "/healthz", timeout=1)
                if r.status_code in (200, 503):
                    return r.json()
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"daemon not healthy in {timeout}s ({last}):\n{self.output()}")

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
