"""A sealing worker (and multiprocessing's resource tracker) exits when the daemon that started it dies."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil

from support import wait_until

SCRIPT = """
import json, os, sys, time
import psutil
from telemetry.meter.store import sealing
worker = sealing.worker_pool().submit(os.getpid).result()
helpers = [p.pid for p in psutil.Process().children(recursive=True)]
print(json.dumps({"worker": worker, "helpers": helpers}), flush=True)
time.sleep(600)
"""


def test_the_sealing_worker_exits_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    pids: set[int] = set()
    try:
        assert parent.stdout is not None
        info = json.loads(parent.stdout.readline())
        pids = set(info["helpers"]) | {info["worker"]}
        assert info["worker"] in pids and len(pids) >= 1
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        t0 = time.monotonic()

        def gone() -> bool:
            return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)

        wait_until(gone, timeout=10, what="the worker and its helpers to exit")
        assert time.monotonic() - t0 < 5
    finally:
        parent.kill()
        for pid in pids:  # what the test started, if it failed before they exited
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
