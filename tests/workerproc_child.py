"""A child for tests/test_workerproc.py: ``python -m workerproc_child`` with this folder on PYTHONPATH."""

from __future__ import annotations

import os
import select
import sys
import time

from telemetry.workerproc import serve_stdio

calls = 0


def stamp(wait: float) -> tuple[int, bool, int]:
    """How many calls came before, and whether the next request was already waiting when this one ended."""
    global calls
    calls += 1
    time.sleep(wait)
    waiting = bool(select.select([sys.stdin.fileno()], [], [], 0.05)[0])
    return calls, waiting, os.getpid()


def main() -> None:  # what ChildProcess calls (telemetry.workerproc._LAUNCH)
    serve_stdio({"stamp": stamp}, "test child")


if __name__ == "__main__":
    main()
