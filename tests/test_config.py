"""Config validation: every error names its field path and value; secrets stay hidden."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from telemetry.config import ConfigError, load_config, printable, validate
from telemetry.config.loader import redact


def test_defaults_need_no_file() -> None:
    s = load_config(None, env={})
    assert s.bus.url == "memory://"
    assert s.api.port == 8777 and s.api.host == "127.0.0.1"
    assert any("/var/log/nova/*.log" in f.paths for f in s.sources.files)
    assert s.store.ttl.default == 7 * 86400


def test_errors_name_field_path_and_value() -> None:
    with pytest.raises(ConfigError) as ei:
        validate({
            "api": {"port": "eighty"},
            "bus": {"url": "ftp://x"},
            "sources": {"files": [{"paths": ["/a"]}, {"paths": []}], "syslog": {"listen": "nohost"}},
            "store": {"ttl": {"default": "forever"}},
            "typo_section": 1,
        })
    problems = {p.path: p for p in ei.value.problems}
    assert problems["api.port"].value == "eighty"
    assert "ftp://x" in problems["bus.url"].message
    assert "sources.files[1].paths" in problems
    assert "sources.syslog.listen" in problems
    assert "not a duration" in problems["store.ttl.default"].message
    assert "unknown setting" in problems["typo_section"].message


def test_env_overrides_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"api": {"port": 9000, "host": "0.0.0.0"}}))
    s = load_config(f, env={"TELEMETRY_API__PORT": "9100", "TELEMETRY_STORE__TTL__DEFAULT": "2d"})
    assert s.api.port == 9100 and s.api.host == "0.0.0.0"
    assert s.store.ttl.default == 2 * 86400


def test_env_override_errors_are_named() -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(None, env={"TELEMETRY_API__PORT": "abc"})
    assert ei.value.problems[0].path == "api.port"


def test_secrets_never_printed() -> None:
    s = validate({
        "api": {"tokens": ["tok-very-secret"]},
        "bus": {"url": "amqp://user:hunter2@broker:5672/"},
        "sources": {"ceilometer": {"telemetry_secret": "s3cret"}},
    })
    text = repr(printable(s))
    assert "tok-very-secret" not in text and "hunter2" not in text and "s3cret" not in text
    assert "amqp://user:***@broker:5672/" in text
    # the values are still there for the code that needs them
    assert s.api.tokens[0].get_secret_value() == "tok-very-secret"
    with pytest.raises(ConfigError) as ei:
        validate({"api": {"tokens": "not-a-list-secret"}})
    assert "not-a-list-secret" not in str(ei.value)
    assert redact({"password": "x", "nested": {"my_token": "y"}}) == {"password": "**********",
                                                                    "nested": {"my_token": "**********"}}


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("api:\n  port: [1, 2\n")
    with pytest.raises(ConfigError) as ei:
        load_config(f, env={})
    assert "line" in ei.value.problems[0].path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "telemetry", *args], capture_output=True, text=True, timeout=60)


def test_check_config_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"api": {"port": 8778, "tokens": ["abc-secret-token"]}}))
    r = run_cli("check-config", str(good), "--print-config")
    assert r.returncode == 0, r.stderr
    assert '"port": 8778' in r.stdout and "abc-secret-token" not in r.stdout + r.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"api": {"port": 99999}, "sources": {"files": [{"path": ["/x"]}]}}))
    r = run_cli("check-config", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "api.port" in r.stderr and "99999" in r.stderr
    assert "sources.files[0].paths" in r.stderr  # missing
    assert "sources.files[0].path" in r.stderr  # unknown

    r = run_cli("check-config", str(tmp_path / "missing.yaml"))
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_committed_reference_matches_models() -> None:
    from telemetry.config.docs import generate

    doc = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
    assert doc.read_text() == generate(), "docs/configuration.md is stale: run `make docs`"


def test_every_registered_command_exists() -> None:
    from click.testing import CliRunner

    from telemetry.cli import COMMANDS, main

    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for name in COMMANDS:
        assert main.get_command(None, name) is not None, name  # type: ignore[arg-type]
        assert name in r.output
