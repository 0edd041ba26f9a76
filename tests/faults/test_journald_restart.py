"""The journal input killed (SIGKILL) while entries stream in, restarted while more are written:
every entry is downstream exactly once (after deduplication on the record id)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from agent_support import read_jsonl
from faults.support import JournalSeqWriter, Tally, finish, kill9


@pytest.mark.slow
@pytest.mark.parametrize("restart", [False, True], ids=["running", "kill9"])
def test_journal_entries_ship_exactly_once(daemon_factory, tmp_path: Path, restart: bool,
                                           fault_table: list[Tally]) -> None:
    journal = tmp_path / "journal"
    out = tmp_path / "downstream.jsonl"
    agent = daemon_factory("agent", {"sources": {
        "files": [], "host_metrics": {"enabled": False},
        "journald": {"directory": str(journal)},
        "agent": {"output_file": str(out)},
    }}, sub="d0")
    writer = JournalSeqWriter(journal, rate=2000)
    writer.start()
    time.sleep(0.3)  # the journal file exists before journalctl looks for it
    agent.start()
    time.sleep(1.5)
    if restart:
        kill9(agent)
        time.sleep(1.0)  # written while the agent is down
        agent.start()
    time.sleep(1.5)
    writer.stop()
    assert writer.error is None, writer.error
    finish(agent, f"journald{', kill -9 + restart' if restart else ''}", writer.written, lambda: read_jsonl(out),
           fault_table)
