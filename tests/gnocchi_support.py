"""The real Gnocchi server beside us, and gnocchiclient pointed at either.

``RealGnocchi`` runs Gnocchi 4 from its own virtualenv (``.venv-gnocchi``,
made by scripts/setup.sh: its pinned libraries clash with ours) on loopback:
its indexer in a fresh database of the local PostgreSQL, file storage in a
temporary folder, the REST app under gunicorn and one ``gnocchi-metricd``.
Gnocchi without Keystone authenticates with HTTP Basic (``gnocchi-basic``);
our API takes gnocchiclient's ``gnocchi-noauth`` headers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
GNOCCHI_VENV = ROOT / ".venv-gnocchi"
PG = "postgresql://postgres@127.0.0.1:5432"


def client(endpoint: str, basic: bool = False) -> Any:
    """gnocchiclient as Ceilometer and Aodh build it: a keystoneauth session with a no-Keystone plugin."""
    from gnocchiclient import auth, client as gclient
    from keystoneauth1 import session

    plugin: Any = (auth.GnocchiBasicPlugin(user="admin", endpoint=endpoint) if basic else
                   auth.GnocchiNoAuthPlugin(user_id="u1", project_id="p1", roles="admin", endpoint=endpoint))
    return gclient.Client("1", session.Session(auth=plugin))


class RealGnocchi:
    def __init__(self, tmp: Path, port: int, workers: int = 1) -> None:
        """``workers``: metricd processes and gunicorn workers (the benchmark gives it every core)."""
        self.workers = workers
        self.tmp = tmp
        self.port = port
        self.db = f"gnocchi_{uuid.uuid4().hex[:12]}"
        self.url = f"http://127.0.0.1:{port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.conf = tmp / "gnocchi.conf"

    def start(self) -> RealGnocchi:
        if not (GNOCCHI_VENV / "bin" / "gnocchi-upgrade").exists():
            raise RuntimeError(f"the real Gnocchi is not installed in {GNOCCHI_VENV}: run scripts/setup.sh test")
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db}"')
        storage = self.tmp / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f"""[DEFAULT]
debug = false
[api]
auth_mode = basic
max_limit = 10000
[indexer]
url = {PG}/{self.db}
[storage]
driver = file
file_basepath = {storage}
[metricd]
workers = {self.workers}
metric_processing_delay = 1
""")
        env = {**os.environ, "GNOCCHI_CONFIG": str(self.conf)}
        subprocess.run([str(GNOCCHI_VENV / "bin" / "gnocchi-upgrade"), "--config-file", str(self.conf)],
                       check=True, capture_output=True, env=env, timeout=180)
        log = open(self.tmp / "gnocchi.log", "wb")
        self.procs.append(subprocess.Popen(
            [str(GNOCCHI_VENV / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{self.port}", "--workers", str(max(2, self.workers)),
             "--pythonpath", str(ROOT / "tests"), "gnocchi_wsgi:application"],
            stdout=log, stderr=subprocess.STDOUT, env=env))
        self.procs.append(subprocess.Popen(
            [str(GNOCCHI_VENV / "bin" / "gnocchi-metricd"), "--config-file", str(self.conf)],
            stdout=log, stderr=subprocess.STDOUT, env=env))
        deadline = time.monotonic() + 120  # loading the app takes seconds, more on a busy machine
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v1/archive_policy", auth=("admin", ""), timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"Gnocchi did not start:\n{(self.tmp / 'gnocchi.log').read_text(errors='replace')}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        try:
            with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        except psycopg.Error:
            pass
