"""Processing steps after grok (Logstash's filter vocabulary): each one, conditionals, load errors."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from telemetry.config import Settings
from telemetry.config.parse import ParseConfig
from telemetry.parse import Parser

NOW = datetime(2026, 3, 10, tzinfo=timezone.utc)
OSLO = ("2026-03-02 09:14:07.112 31842 INFO nova.compute.claims [req-7d1e2a40-5b3c-4f0e-9a55-0c2d6b3e8f11 - - - - -] "
        "Claim successful on node=cn01 vcpus=4 ram=8192 user=\"a b\"")


def parse(steps: list[dict[str, Any]], line: str = OSLO, type_: str = "openstack", **types: Any) -> dict | None:
    cfg = ParseConfig.model_validate({"steps": steps, "types": types})
    return Parser.from_config(cfg).parse_dict(line, type_, now=NOW, with_id=False)


def test_drop_and_conditionals() -> None:
    assert parse([{"if": {"field": "level", "equals": "INFO"}, "then": [{"drop": None}]}]) is None
    kept = parse([{"if": {"field": "level", "in": ["ERROR", "CRITICAL"]}, "then": [{"drop": {}}],
                   "else": [{"mutate": {"add_tag": ["routine"]}}]}])
    assert kept is not None and kept["tags"] == ["routine"]
    assert parse([{"if": {"field": "logger", "matches": r"^nova\.compute"}, "then": [{"drop": {}}]}]) is None
    assert parse([{"if": {"field": "nope", "exists": True}, "then": [{"drop": {}}]}]) is not None
    assert parse([{"if": {"field": "nope", "exists": False, "negate": True}, "then": [{"drop": {}}]}]) is not None
    assert parse([], type_="openstack", openstack={"steps": [{"drop": {}}]}) is None  # per type
    assert parse([], type_="nova", nova={"steps": [{"drop": {}}]}) is None  # an alias names its type


def test_mutate() -> None:
    ev = parse([{"mutate": {
        "rename": {"logger": "source_logger"}, "copy": {"pid": "worker"}, "replace": {"where": "%{host}/%{pid}"},
        "convert": {"worker": "string", "flag": "boolean"}, "gsub": [["message", r"\d+", "N"]],
        "uppercase": ["loglevel"], "lowercase": ["component"], "split": {"csv": ","},
        "add_field": {"[meta][node]": "n-%{pid}", "flag": "yes", "csv": "a,b"}, "add_tag": ["t-%{loglevel}"],
        "remove_field": ["user_id"],
    }}])
    assert ev is not None
    assert ev["logger"] is None and ev["source_logger"] == "nova.compute.claims"
    assert ev["worker"] == "31842" and ev["where"] == "%{host}/31842"  # a missing reference stays as written
    assert ev["message"].startswith("Claim successful on node=cnN vcpus=N")
    assert ev["meta"] == {"node": "n-31842"} and ev["tags"] == ["t-INFO"] and ev["flag"] == "yes"
    assert ev["csv"] == "a,b"  # add_field runs after split, as in Logstash
    ev = parse([{"mutate": {"add_field": {"flag": "yes"}}}, {"mutate": {"convert": {"flag": "boolean", "pid": "float"},
                                                                        "remove_tag": ["x"]}}])
    assert ev is not None and ev["flag"] is True and ev["pid"] == 31842  # pid is the contract's integer


def test_kv_dissect_json_date() -> None:
    ev = parse([{"kv": {"source": "message", "include_keys": ["node", "vcpus", "user"]}}])
    assert ev is not None and (ev["node"], ev["vcpus"], ev["user"]) == ("cn01", "4", "a b") and "ram" not in ev
    ev = parse([{"kv": {"target": "kv", "prefix": "x_", "max_keys": 2}}])
    assert ev is not None and ev["kv"] == {"x_node": "cn01", "x_vcpus": "4"}
    ev = parse([{"dissect": {"mapping": {"message": "Claim %{status} on %{?k}=%{&k} %{+rest} %{+rest}"}}}])
    assert ev is not None and (ev["status"], ev["node"], ev["rest"]) == ("successful", "cn01", 'vcpus=4 ram=8192 user="a b"')
    ev = parse([{"dissect": {"mapping": {"message": "nothing %{here}"}}}])
    assert ev is not None and ev["tags"] == ["_dissectfailure"]
    line = '2026-03-02 09:14:07.112 31842 INFO x [-] {"a": {"b": 1}, "when": "02/Mar/2026:10:00:00 +0100"}'
    ev = parse([{"json": {"target": "doc"}}, {"date": {"match": ["[doc][when]", "dd/MMM/yyyy:HH:mm:ss Z"]}}], line)
    assert ev is not None and ev["doc"]["a"] == {"b": 1} and ev["@timestamp"] == "2026-03-02T09:00:00Z"
    ev = parse([{"json": {}}], line)
    assert ev is not None and ev["a"] == {"b": 1}
    ev = parse([{"json": {"source": "logger"}}])
    assert ev is not None and ev["tags"] == ["_jsonparsefailure"]
    ev = parse([{"mutate": {"add_field": {"t": "1772442845123"}}}, {"date": {"match": ["t", "ISO8601", "UNIX_MS"]}}])
    assert ev is not None and ev["@timestamp"] == "2026-03-02T09:14:05.123000Z"
    ev = parse([{"date": {"match": ["logger", "yyyy-MM-dd"]}}])
    assert ev is not None and ev["tags"] == ["_dateparsefailure"]
    ev = parse([{"mutate": {"add_field": {"t": "Mar 2 2026 10:00:00"}}},
                {"date": {"match": ["t", "MMM d yyyy HH:mm:ss"], "timezone": "Europe/Paris", "target": "local"}}])
    assert ev is not None and ev["local"] == "2026-03-02T09:00:00Z"


def test_the_cli_applies_the_steps(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from telemetry.cli import main

    cfg = tmp_path / "t.yaml"
    cfg.write_text("parse:\n  steps:\n    - mutate: {add_tag: [seen]}\n    - if: {field: level, equals: DEBUG}\n"
                   "      then: [{drop: {}}]\n")
    debug = OSLO.replace(" INFO ", " DEBUG ")
    out = CliRunner().invoke(main, ["parse", "-c", str(cfg), "--type", "openstack", "-"], input=f"{OSLO}\n{debug}\n")
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and '"tags":["seen"]' in lines[0]


@pytest.mark.parametrize("steps,where", [
    ([{"mutate": {"gsub": [["message", "(", "x"]]}}], "steps.0.mutate.gsub"),
    ([{"mutate": {"remove_field": ["@timestamp"]}}], "steps.0.mutate"),
    ([{"dissect": {"mapping": {"message": "%{a}%{b}"}}}], "steps.0.dissect.mapping"),
    ([{"date": {"match": ["t", "yyyy-QQ"]}}], "steps.0.date.match"),
    ([{"if": {"field": "a", "equals": 1, "exists": True}, "then": []}], "steps.0.if"),
    ([{"if": {"field": "a", "equals": 1}, "then": [{"kv": {"nope": 1}}]}], "steps.0.then.0.kv.nope"),
    ([{"mutate": {}, "drop": {}}], "steps.0"),
    ([{"mutate": {}, "then": [{"drop": {}}]}], "steps.0"),
])
def test_bad_steps_fail_at_load_naming_the_step(steps: list[dict[str, Any]], where: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings.model_validate({"parse": {"steps": steps}})
    locs = [".".join(str(p) for p in e["loc"]) for e in err.value.errors()]
    assert any(loc.startswith(f"parse.{where}") for loc in locs), locs


def test_unknown_type_in_parse_types_fails_at_start() -> None:
    with pytest.raises(ValueError, match="unknown log type 'nope'"):
        Parser.from_config(ParseConfig.model_validate({"types": {"nope": {"steps": [{"drop": {}}]}}}))
