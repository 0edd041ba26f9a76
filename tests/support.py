"""Helpers every test module shares: waiting on a condition, a Ceilometer config for its real publishers.

Waits poll a positive signal (a count reached, a line seen) with a deadline
and fail naming what they waited for; a test that claims nothing more
arrived uses ``settled``, which waits for a quiet spell after the last
change instead of a fixed sleep.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(cond: Callable[[], T], timeout: float = 15.0, what: str = "condition", every: float = 0.1) -> T:
    """Poll ``cond`` until it returns something true; that value, or AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


async def wait_for(cond: Callable[[], Any], timeout: float = 5.0, what: str = "condition",
                   every: float = 0.01) -> Any:
    """``wait_until`` for coroutines: the event loop keeps running between polls."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


async def settled(measure: Callable[[], Any], quiet: float = 0.5, timeout: float = 10.0) -> Any:
    """The value of ``measure`` once it stopped changing for ``quiet`` seconds (nothing more arrives)."""
    deadline = time.monotonic() + timeout
    last, since = measure(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"still changing after {timeout}s: {last!r}")
        await asyncio.sleep(0.05)
        now = measure()
        if now != last:
            last, since = now, time.monotonic()
    return last


def ceilometer_conf(secret: str | None) -> Any:
    """A Ceilometer configuration with just what its publishers read (oslo.config)."""
    from ceilometer.publisher import utils as c_utils
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf.register_opts(c_utils.OPTS, group="publisher")
    conf.register_opt(cfg.IntOpt("max_parallel_requests", default=4))
    conf([], project="ceilometer-test", default_config_files=[], default_config_dirs=[])
    conf.set_override("telemetry_secret", secret or "", group="publisher")
    return conf


def aodh(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``aodh`` CLI in its noauth mode against ``url`` (our Aodh v2 API)."""
    cmd = [str(Path(sys.executable).parent / "aodh"), "--os-auth-type", "aodh-noauth", "--user-id", "u1",
           "--project-id", "p1", "--aodh-endpoint", url, *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
