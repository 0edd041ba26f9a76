"""Rules path resolution: the shipped rules are found wherever the daemon starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry.content import content_path
from telemetry.rules.loader import load_rules, rule_files


def test_a_rules_folder_in_the_current_folder_does_not_hide_the_shipped_rules(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "mine.yaml").write_text("alarms:\n  - {name: mine, type: log, log_rule: {query: 'x'}}\n")
    monkeypatch.chdir(tmp_path)
    files = rule_files(["rules/"])
    assert content_path("rules").joinpath("alarms", "default.yaml").resolve() in files
    assert (tmp_path / "rules" / "mine.yaml").resolve() not in files
    assert {a.name for a in load_rules(["rules/"]).alarms} >= {a.name for a in load_rules([str(content_path("rules"))]).alarms}


def test_the_operator_replaces_the_shipped_rules_by_listing_other_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "mine.yaml").write_text("alarms:\n  - {name: mine, type: log, log_rule: {query: 'x'}}\n")
    monkeypatch.chdir(tmp_path)
    assert [a.name for a in load_rules(["site/"]).alarms] == ["mine"]
    assert [a.name for a in load_rules([str(tmp_path / "site")]).alarms] == ["mine"]
