"""Silences, grouping, repeats and inhibition suppress what they should and nothing else."""

from __future__ import annotations

from datetime import timedelta

from actions_support import Harness, Receiver, transition

from telemetry.actions.models import Matcher, SilenceIn
from telemetry.timeutil import utcnow


def _silence(*matchers: str, start: float = -60, end: float = 3600, comment: str = "maintenance") -> SilenceIn:
    now = utcnow()
    return SilenceIn(matchers=list(matchers), starts_at=now + timedelta(seconds=start),
                     ends_at=now + timedelta(seconds=end), comment=comment)


async def _run(tmp_path, records, silences=(), **cfg):
    rx = await Receiver().start()
    h = await Harness(tmp_path, **cfg).start()
    try:
        with h.d.outbox.tx():
            for s in silences:
                h.d.outbox.add_silence(s)
        await h.publish(*[r(rx.url) for r in records])
        await h.drained()
        return rx.requests, h.log()
    finally:
        await h.stop()
        await rx.stop()


def _t(**kw):
    return lambda url: transition(actions=[url], **kw)


async def test_silences_by_host_role_alarm_and_label(tmp_path):
    records = [
        _t(alarm_id="h1", labels={"host": "compute-1", "role": "compute"}),   # host silenced
        _t(alarm_id="h2", labels={"host": "compute-2", "role": "compute"}),   # delivered
        _t(alarm_id="r1", labels={"host": "db-1", "role": "database"}),       # role silenced
        _t(alarm_id="n1", alarm_name="disk_full", labels={"host": "net-1"}),  # alarm name silenced
        _t(alarm_id="x1", labels={"host": "net-2", "rack": "r12"}),           # label regex silenced
        _t(alarm_id="x2", labels={"host": "net-3", "rack": "r21"}),           # delivered
        _t(alarm_id="dep", labels={"host": "vm-7"}, depends_on=["h1-parent"]),  # parent silenced
    ]
    silences = [_silence("host=compute-1"), _silence("role=database"), _silence("alarm_name=disk_full"),
                _silence("rack=~r1.*"), _silence("alarm_id=h1-parent"),
                _silence("host=compute-2", start=600),            # not started yet
                _silence("host=net-3", start=-7200, end=-3600)]   # already over
    reqs, log = await _run(tmp_path, records, silences)
    assert sorted(r["json"]["alarm_id"] for r in reqs) == ["h2", "x2"]
    by_alarm = {r.alarm_id: r.status for r in log}
    for a in ("h1", "r1", "n1", "x1", "dep"):
        assert by_alarm[a].startswith("suppressed:silenced:"), a


async def test_grouping_sends_one_message_per_group(tmp_path):
    records = [_t(alarm_id=f"c{i}", labels={"host": f"compute-{i}", "role": "compute"}) for i in range(3)]
    records.append(_t(alarm_id="d1", labels={"host": "db-1", "role": "database"}))
    rx = await Receiver().start()
    h = await Harness(tmp_path, group_by=["role"], group_wait=0.5).start()
    try:
        await h.publish(*[r("slack+" + rx.url) for r in records])
        await rx.wait(2)
        await h.drained()
        assert len(rx.requests) == 2
        texts = sorted(r["json"]["text"] for r in rx.requests)
        assert texts[0].startswith("3 alarm transitions:") and all(f"compute-{i}" in texts[0] for i in range(3))
        assert "db-1" in texts[1] and "compute" not in texts[1]
        assert sorted(r.status for r in h.log()) == ["delivered"] * 4
    finally:
        await h.stop()
        await rx.stop()


async def test_aodh_webhooks_are_never_merged(tmp_path):
    records = [_t(alarm_id=f"c{i}", labels={"host": f"compute-{i}", "role": "compute"}) for i in range(3)]
    reqs, _ = await _run(tmp_path, records, group_by=["role"], group_wait=0.2)
    assert sorted(r["json"]["alarm_id"] for r in reqs) == ["c0", "c1", "c2"]


async def test_repeat_actions_and_interval(tmp_path):
    records = [
        _t(alarm_id="norep", previous="alarm", current="alarm"),                      # repeat_actions false: dropped
        _t(alarm_id="rep", timestamp="2026-03-02T10:00:00Z"),                         # state change: sent
        _t(alarm_id="rep", previous="alarm", repeat_actions=True, timestamp="2026-03-02T10:01:00Z"),  # within 1h
        _t(alarm_id="rep", previous="alarm", current="ok", timestamp="2026-03-02T10:02:00Z"),        # change: sent
    ]
    reqs, log = await _run(tmp_path, records)
    assert sorted((r["json"]["alarm_id"], r["json"]["current"]) for r in reqs) == [("rep", "alarm"), ("rep", "ok")]
    statuses = sorted(r.status for r in log if r.status.startswith("suppressed"))
    assert statuses == ["suppressed:not-repeating", "suppressed:repeat-interval"]


async def test_repeat_interval_elapsed_sends_again(tmp_path):
    records = [_t(alarm_id="rep", previous="alarm", repeat_actions=True, timestamp=f"2026-03-02T10:0{i}:00Z")
               for i in range(2)]
    reqs, _ = await _run(tmp_path, records, repeat_interval=0)
    assert len(reqs) == 2


async def test_inhibition_of_warnings_while_related_critical_fires(tmp_path):
    records = [
        _t(alarm_id="crit", severity="critical", labels={"host": "compute-1"}),
        _t(alarm_id="warn-same-host", severity="moderate", labels={"host": "compute-1"}),  # inhibited
        _t(alarm_id="warn-other-host", severity="low", labels={"host": "compute-2"}),      # sent
        _t(alarm_id="crit2", severity="critical", labels={"host": "compute-1"}),           # critical: sent
    ]
    reqs, log = await _run(tmp_path, records, inhibit={})
    assert sorted(r["json"]["alarm_id"] for r in reqs) == ["crit", "crit2", "warn-other-host"]
    assert [r.status for r in log if r.alarm_id == "warn-same-host"] == ["suppressed:inhibited:crit"]


async def test_inhibition_ends_when_critical_clears(tmp_path):
    records = [
        _t(alarm_id="crit", severity="critical", labels={"host": "compute-1"}),
        _t(alarm_id="crit", severity="critical", previous="alarm", current="ok", labels={"host": "compute-1"},
           timestamp="2026-03-02T10:03:00Z"),
        _t(alarm_id="warn", severity="low", labels={"host": "compute-1"}, timestamp="2026-03-02T10:04:00Z"),
    ]
    reqs, _ = await _run(tmp_path, records, inhibit={})
    assert sorted(r["json"]["alarm_id"] for r in reqs) == ["crit", "crit", "warn"]


def test_matcher_parsing():
    assert Matcher.parse("host=compute-1").matches({"host": "compute-1"})
    assert Matcher.parse("role!=db").matches({"role": "compute"})
    assert not Matcher.parse("rack!~r1.*").matches({"rack": "r12"})
    try:
        Matcher.parse("nonsense")
    except ValueError as exc:
        assert "expected name=value" in str(exc)
    else:
        raise AssertionError("a bad matcher must be refused")
