"""Log rotation under a steady writer (2,000 lines/s), with and without a kill -9 of the agent.

Rename rotation (the rotated name outside the glob) and copytruncate with the copy
inside and outside the glob, three rotations per case. In the restart cases the agent
is killed between the first and the second rotation and started again after the
second, so the rotated file holds lines it never read: they must come from the
rotated file, not be skipped as "truncated". The agent ships to its fsynced
``output_file``, which outlives it. Every sequence number must be downstream exactly
once (after deduplication on the record id).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from agent_support import read_jsonl
from faults.support import SeqWriter, Tally, copytruncate, finish, kill9, rename_rotate

CASES = {
    "rename": ("app.log", rename_rotate()),
    "copytruncate, copy in glob": ("app.log*", copytruncate()),
    "copytruncate, copy outside glob": ("app.log", copytruncate()),
}


@pytest.mark.slow
@pytest.mark.parametrize("restart", [False, True], ids=["running", "kill9"])
@pytest.mark.parametrize("case", list(CASES))
def test_rotation_loses_and_repeats_nothing(
    daemon_factory, tmp_path: Path, case: str, restart: bool, fault_table: list[Tally]
) -> None:
    pattern, rotate = CASES[case]
    logs = tmp_path / "d0" / "logs"
    logs.mkdir(parents=True)
    out = tmp_path / "downstream.jsonl"
    agent = daemon_factory("agent", {"sources": {
        "files": [{"paths": [str(logs / pattern)], "fields": {"type": "openstack", "component": "nova"},
                   "multiline": "python"}],
        "host_metrics": {"enabled": False},
        "agent": {"output_file": str(out)},
    }}, sub="d0")
    agent.start()
    writer = SeqWriter(logs / "app.log", rate=2000)
    writer.start()
    time.sleep(1.0)
    writer.do(rotate)
    time.sleep(1.0)
    if restart:
        kill9(agent)
    time.sleep(0.3)
    writer.do(rotate)  # while the agent is down, in the restart cases
    time.sleep(0.5)
    if restart:
        agent.start()
    time.sleep(1.0)
    writer.do(rotate)
    time.sleep(1.0)
    writer.stop()
    assert writer.error is None, writer.error

    finish(agent, f"{case}{', kill -9 + restart' if restart else ''}", writer.written, lambda: read_jsonl(out),
           fault_table)
