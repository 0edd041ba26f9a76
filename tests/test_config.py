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
    assert s.api.tokens[0].token is not None and s.api.tokens[0].token.get_secret_value() == "tok-very-secret"
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


def _enabled_sections(model: type, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of every section model (reached from Settings) that has an ``enabled`` switch."""
    import typing

    from pydantic import BaseModel

    found = []
    for name, field in model.model_fields.items():
        for tp in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(tp, type) and issubclass(tp, BaseModel) and typing.get_origin(field.annotation) is not list:
                sub = (*path, name)
                if "enabled" in tp.model_fields:
                    found.append(sub)
                found += _enabled_sections(tp, sub)
    return found


def test_a_written_section_is_enabled() -> None:
    from telemetry.config import Settings

    contract = validate({"sources": {
        "notifications": {"url": "amqp://guest:guest@127.0.0.1:5672/", "exchanges": ["nova"], "topics": ["notifications"]},
        "syslog": {"listen": "127.0.0.1:5140"}}})
    assert contract.sources.notifications.enabled and contract.sources.syslog.enabled
    default = validate({})
    assert not default.sources.notifications.enabled and not default.sources.syslog.enabled  # all-in-one defaults
    assert default.sources.host_metrics.enabled and default.api.enabled and default.rules.enabled
    paths = _enabled_sections(Settings)
    assert ("sources", "notifications") in paths and ("bus", "tls") in paths
    for path in paths:
        data: dict = {}
        node = data
        for part in path:
            node = node.setdefault(part, {})
        if path == ("bus", "tls"):
            data["bus"]["url"] = "kafka://127.0.0.1:9092"
        if path == ("cluster",):  # a cluster needs its database named
            data["cluster"]["url"] = "postgresql://telemetry@127.0.0.1/test"
        section = validate(data)
        for part in path:
            section = getattr(section, part)
        assert section.enabled is True, f"{'.'.join(path)} written as {{}} is off"
        node["enabled"] = False
        section = validate(data)
        for part in path:
            section = getattr(section, part)
        assert section.enabled is False


def test_client_variables_are_not_settings() -> None:
    s = load_config(None, env={"TELEMETRY_URL": "http://127.0.0.1:8777", "TELEMETRY_TOKEN": "t0k"})
    assert s.api.port == 8777
    r = subprocess.run([sys.executable, "-m", "telemetry", "run", "--print-config"], capture_output=True, text=True,
                       timeout=60, env={**__import__("os").environ, "TELEMETRY_URL": "http://x:1", "TELEMETRY_TOKEN": "t"})
    assert r.returncode == 0, r.stderr


def test_errors_from_the_environment_name_the_variable(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("api: {port: 8778}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(f, env={"TELEMETRY_API__PORT": "abc", "TELEMETRY_BOGUS": "1"})
    by_var = {p.variable: p for p in ei.value.problems}
    assert set(by_var) == {"TELEMETRY_API__PORT", "TELEMETRY_BOGUS"}
    assert ei.value.source == "the environment"
    assert "TELEMETRY_API__PORT (api.port)" in str(ei.value)
    r = subprocess.run([sys.executable, "-m", "telemetry", "run", "-c", str(f)], capture_output=True, text=True,
                       timeout=60, env={**__import__("os").environ, "TELEMETRY_API__PORT": "abc"})
    assert r.returncode == 2 and "TELEMETRY_API__PORT" in r.stderr and "Traceback" not in r.stderr
    assert "in the environment" in r.stderr


def test_a_mistyped_bus_url_keeps_its_password_hidden() -> None:
    with pytest.raises(ConfigError) as ei:
        validate({"bus": {"url": "amqqp://guest:hunter2@127.0.0.1:5672/"}})
    assert "hunter2" not in str(ei.value)
    assert "amqqp://guest:***@127.0.0.1:5672/" in str(ei.value)


@pytest.mark.parametrize("rel,kind", [("collectors/meters.yaml", "meter definitions"),
                                      ("collectors/pipeline.yaml", "sample pipeline"),
                                      ("rules/alarms/default.yaml", "rules file")])
def test_check_config_names_other_kinds_of_file(rel: str, kind: str) -> None:
    from telemetry.content import content_path

    path = content_path(rel.split("/")[0]) / rel.split("/", 1)[1]
    r = run_cli("check-config", str(path))
    assert r.returncode == 0, r.stderr
    assert kind in r.stderr and "not a daemon configuration" in r.stderr
    assert "unknown setting" not in r.stderr and len(r.stderr) < 600


def test_check_config_checks_other_kinds_with_their_loader(tmp_path: Path) -> None:
    f = tmp_path / "meters.yaml"
    f.write_text(yaml.safe_dump({"metric": [{"name": "x", "type": "gauge"}]}))
    r = run_cli("check-config", str(f))
    assert r.returncode == 2 and "required fields missing" in r.stderr


def test_check_config_flags_placeholders() -> None:
    from telemetry.content import content_path

    r = run_cli("check-config", str(content_path("collectors") / "server.yaml"))
    assert r.returncode == 2
    assert "bus.url" in r.stderr and "api.tokens[0]" in r.stderr and "CHANGE_ME" in r.stderr
