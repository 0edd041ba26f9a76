"""Values bounded where they enter: one poison line never stops the parse stage (issue 14)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from telemetry.bus import MemoryBus
from telemetry.bus.records import publish_records
from telemetry.config import Settings
from telemetry.daemon import Runtime
from telemetry.models import Event, RawLog, decode
from telemetry.parse import Parser
from telemetry.parse.grok import Grok
from telemetry.parse.jsonline import FIELD_LIMIT_TAG, MAX_DEPTH, MAX_FIELDS, decode_object
from telemetry.parse.patterns import load_pattern_dirs
from telemetry.parse.stage import ParseStage

HUGE = "9" * 30
OVS_POISON = f"2026-03-02T09:14:06.101Z|{HUGE}|bridge|INFO|bridge br-int: added interface"
OSLO_POISON = f"2026-03-02 09:14:07.112 {HUGE} INFO nova.compute.manager [-] pid beyond 64 bits"
GOOD = "2026-03-02 09:14:0{}.112 31842 INFO nova.compute.manager [-] good line {}"


def test_numbers_no_store_can_hold_stay_text_and_tag_the_event() -> None:
    lib = load_pattern_dirs([])
    g = Grok("%{INT:a:int} %{NUMBER:b:float} %{INT:c:int}", lib)
    assert g.match(f"{HUGE} 1.5 7") == {"a": HUGE, "b": 1.5, "c": 7, "_grokconversionfailure": ["a"]}
    assert Grok("%{DATA:x:float}$", lib).match("inf") == {"x": "inf", "_grokconversionfailure": ["x"]}
    ev = Parser().parse_dict(OVS_POISON, "ovs")
    assert ev is not None and ev["sequence"] == HUGE and ev["grok_conversion_failures"] == ["sequence"]
    assert "_grokconversionfailure" in ev["tags"] and ev["level"] == "INFO"
    ev = Parser().parse_dict(OSLO_POISON, "openstack")
    assert ev is not None and ev["pid"] is None and ev["pid_raw"] == HUGE
    assert decode(Event, Event.model_validate(ev).to_json()).message == "pid beyond 64 bits"


def test_json_lines_are_bounded_in_depth_and_fields() -> None:
    deep: object = "leaf"
    for _ in range(MAX_DEPTH + 5):
        deep = {"d": deep}
    import orjson

    obj, tags = decode_object(orjson.dumps({"deep": deep, **{f"k{i}": i for i in range(MAX_FIELDS + 50)}}).decode())
    assert obj is not None and tags == [FIELD_LIMIT_TAG] and len(obj) <= MAX_FIELDS
    node = obj["deep"]
    for _ in range(MAX_DEPTH - 1):
        node = node["d"]
    assert isinstance(node, str) and node.startswith('{"d"')  # kept as JSON text past the depth bound


async def test_a_poison_line_never_stops_the_stage(tmp_path: Path) -> None:
    rt = Runtime(settings=Settings(data_dir=tmp_path), mode="server", bus=MemoryBus(), data_dir=tmp_path)
    events_in = await rt.bus.subscribe(["events"], "inspect")
    stage = ParseStage(rt)
    await stage.start()
    raws = [RawLog(host="cn01", path="/var/log/ovs.log", type="ovs", offset=0, inode=1, lines=[OVS_POISON]),
            RawLog(host="cn01", path="/var/log/nova.log", type="openstack", offset=0, inode=2, lines=[OSLO_POISON])]
    raws += [RawLog(host="cn01", path="/var/log/nova.log", type="openstack", offset=i, inode=2,
                    lines=[GOOD.format(i, i)]) for i in range(1, 6)]
    # through syslog too: a datagram whose message carries the same poison
    raws.append(RawLog(host="lb01", path="syslog://10.0.0.5/haproxy", type="syslog", component="haproxy",
                       lines=[f"10.0.0.57:51234 [02/Mar/2026:09:14:00.104] f b/s 0/0/1/85/86 200 {HUGE} - - ---- "
                              f"1/1/1/1/0 0/0 \"GET / HTTP/1.1\""], priority=134, rfc="3164",
                       timestamp="Mar  2 09:14:00", logsource="lb01", program="haproxy", pid="1402"))
    await publish_records(rt.bus, raws)
    got: list[Event] = []
    deadline = asyncio.get_running_loop().time() + 5
    while len(got) < len(raws) and asyncio.get_running_loop().time() < deadline:
        for d in await events_in.fetch(20, 0.2):
            got.append(decode(Event, d.value))
            await events_in.ack([d])
    await stage.stop()
    assert {e.id for e in got} == {r.id for r in raws}
    good = sorted(e.message for e in got if e.message.startswith("good line"))
    assert good == [f"good line {i}" for i in range(1, 6)]
    syslog = next(e for e in got if e.host == "lb01")
    assert (syslog.model_extra or {})["bytes_read"] == HUGE and "_grokconversionfailure" in syslog.tags
    assert syslog.level == "INFO" and stage.rejected == 0
