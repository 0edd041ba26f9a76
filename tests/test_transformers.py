"""The transformer pipeline: Ceilometer's pipeline.yaml, rates across resets and restarts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from telemetry.content import content_path
from telemetry.meter.pipeline import PipelineError, SamplePipeline, load_pipeline, parse_pipeline
from telemetry.meter.transformers.expr import Expression, TransformExpressionError
from telemetry.models import Sample

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
DEFAULT = content_path("collectors") / "pipeline.yaml"


def cpu(seconds: int, ns: float, rid: str = "vm-1", cpus: int = 2) -> Sample:
    return Sample(counter_name="cpu", counter_type="cumulative", counter_unit="ns", counter_volume=ns,
                  resource_id=rid, timestamp=T0 + timedelta(seconds=seconds),
                  resource_metadata={"cpu_number": cpus}, project_id="p1", user_id="u1")


def gauge(name: str, value: float, seconds: int = 0, rid: str = "vm-1", unit: str = "MB", **meta) -> Sample:
    return Sample(counter_name=name, counter_type="gauge", counter_unit=unit, counter_volume=value,
                  resource_id=rid, timestamp=T0 + timedelta(seconds=seconds), resource_metadata=meta)


def util(out: list[Sample]) -> list[float]:
    return [round(s.counter_volume, 6) for s in out if s.counter_name == "cpu_util"]


def test_cpu_util_across_a_counter_reset_and_a_restart(tmp_path):
    state = tmp_path / "pipeline"
    p = SamplePipeline.from_file(DEFAULT, state)
    # 2 vCPUs; every 10 s. 5e9 ns of CPU in 10 s over 2 CPUs is 25 %.
    assert util(p.process([cpu(0, 0)])) == []  # the first sample only primes the cache
    out = p.process([cpu(10, 5e9), cpu(20, 15e9)])
    assert util(out) == [25.0, 50.0]
    util_sample = next(s for s in out if s.counter_name == "cpu_util")
    assert util_sample.counter_unit == "%" and util_sample.counter_type.value == "gauge"
    assert util_sample.resource_id == "vm-1" and util_sample.timestamp == T0 + timedelta(seconds=10)
    # The VM rebooted: the counter fell to 2e9, which is the growth since the reset (10 %).
    assert util(p.process([cpu(30, 2e9)])) == [10.0]
    assert util(p.process([cpu(40, 6e9)])) == [20.0]
    p.checkpoint()

    # The daemon restarts: the cache comes back from <data_dir>/pipeline/.
    p2 = SamplePipeline.from_file(DEFAULT, state)
    assert util(p2.process([cpu(50, 12e9)])) == [30.0]
    # More than 100 % (clock skew, a hot-added CPU) is capped, as target.max says.
    assert util(p2.process([cpu(60, 12e9 + 30e9)])) == [100.0]
    # The raw cumulative samples are kept too (meter_sink takes "*").
    assert [s.counter_name for s in p2.process([cpu(70, 44e9)])].count("cpu") == 1


def test_redelivery_never_makes_a_second_derived_sample(tmp_path):
    state = tmp_path / "pipeline"
    p = SamplePipeline.from_file(DEFAULT, state)
    p.process([cpu(0, 0)])
    first = p.process([cpu(10, 5e9)])
    p.checkpoint()
    # The same sample again (the bus redelivered it): the raw one passes to the
    # store, which dedups on message_id, but no second cpu_util is made.
    again = p.process([cpu(10, 5e9)])
    assert util(again) == []
    assert [s.message_id for s in again] == [cpu(10, 5e9).message_id]
    # A crash after process() but before the store's write: state is rolled back
    # to the checkpoint, so re-processing re-derives the same sample with the same id.
    before_crash = util_ids(p.process([cpu(20, 15e9)]))
    p_restarted = SamplePipeline.from_file(DEFAULT, state)
    redo = p_restarted.process([cpu(20, 15e9)])
    assert util(redo) == [50.0]
    assert util_ids(redo) == before_crash
    # Derived ids differ from their inputs' (both are stored).
    assert util_ids(first) != [cpu(10, 5e9).message_id]


def util_ids(out: list[Sample]) -> list[str]:
    return [s.message_id for s in out if s.counter_name == "cpu_util"]


def test_series_are_kept_apart_and_out_of_order_samples_dropped(tmp_path):
    p = SamplePipeline.from_file(DEFAULT, tmp_path)
    p.process([cpu(0, 0, "a", cpus=1), cpu(0, 0, "b", cpus=4)])
    out = p.process([cpu(10, 5e9, "a", cpus=1), cpu(10, 20e9, "b", cpus=4)])
    got = {s.resource_id: s.counter_volume for s in out if s.counter_name == "cpu_util"}
    assert got == {"a": 50.0, "b": 50.0}
    # A late sample (older than the last one consumed) makes no rate.
    assert util(p.process([cpu(5, 1e9, "a", cpus=1)])) == []
    # Within one batch, samples are taken in time order.
    assert util(p.process([cpu(30, 9e9, "a", cpus=1), cpu(20, 7e9, "a", cpus=1)])) == [20.0, 20.0]


def test_host_counters_become_rates():
    p = SamplePipeline(load_pipeline(DEFAULT))
    def net(sec: int, v: float) -> Sample:
        return Sample(counter_name="hardware.network.incoming.bytes", counter_type="cumulative",
                      counter_unit="B", counter_volume=v, resource_id="host.eth0",
                      timestamp=T0 + timedelta(seconds=sec))
    p.process([net(0, 1000)])
    out = p.process([net(10, 51000)])
    rate = [s for s in out if s.counter_name == "hardware.network.incoming.bytes.rate"]
    assert len(rate) == 1 and rate[0].counter_volume == 5000.0 and rate[0].counter_unit == "B/s"
    assert rate[0].counter_type.value == "gauge"


def pipeline(sinks: list[dict], meters: list[str] | None = None) -> SamplePipeline:
    return SamplePipeline(parse_pipeline({
        "sources": [{"name": "src", "meters": meters or ["*"], "sinks": [s["name"] for s in sinks]}],
        "sinks": [{"publishers": ["store://"], **s} for s in sinks],
    }))


def test_meter_selection_wildcards_and_exclusions():
    p = pipeline([{"name": "all"}], ["*", "!disk.*"])
    out = p.process([gauge("memory", 1), gauge("disk.read.bytes", 2), gauge("cpu_util", 3)])
    assert [s.counter_name for s in out] == ["memory", "cpu_util"]
    only = pipeline([{"name": "some"}], ["memory", "cpu*"])
    assert [s.counter_name for s in only.process([gauge("memory", 1), gauge("disk", 2), gauge("cpu_util", 3)])] == [
        "memory", "cpu_util"]
    for bad in (["memory", "!cpu"], ["*", "memory"]):
        with pytest.raises(PipelineError, match="meters"):
            pipeline([{"name": "x"}], bad)


def test_unit_conversion_with_scale_expression_and_map():
    p = pipeline([{"name": "bits", "transformers": [{"name": "unit_conversion", "parameters": {
        "source": {"unit": "B"},
        "target": {"name": "network.bits", "unit": "bit", "scale": "volume * 8", "type": "gauge"}}}]}])
    out = p.process([gauge("network.bytes", 100, unit="B"), gauge("other", 5, unit="MB")])
    assert [(s.counter_name, s.counter_unit, s.counter_volume) for s in out] == [
        ("network.bits", "bit", 800.0), ("other", "MB", 5.0)]
    factor = pipeline([{"name": "kb", "transformers": [{"name": "unit_conversion", "parameters": {
        "target": {"unit": "KB", "scale": 0.001}}}]}])
    assert factor.process([gauge("disk.size", 5000, unit="B")])[0].counter_volume == 5.0


def test_arithmetic_needs_every_meter_and_survives_a_restart(tmp_path):
    spec = [{"name": "mem", "transformers": [{"name": "arithmetic", "parameters": {
        "target": {"name": "memory_util", "unit": "%", "type": "gauge",
                   "expr": "100 * $(memory.usage) / $(memory)"}}}]}]
    defn = parse_pipeline({"sources": [{"name": "s", "meters": ["memory", "memory.usage"], "sinks": ["mem"]}],
                           "sinks": [{"publishers": ["store://"], **spec[0]}]})
    p = SamplePipeline(defn, tmp_path)
    assert p.process([gauge("memory.usage", 512, seconds=0)]) == []
    p.checkpoint()
    p2 = SamplePipeline(defn, tmp_path)
    out = p2.process([gauge("memory", 2048, seconds=1)])
    assert [(s.counter_name, s.counter_volume, s.timestamp) for s in out] == [
        ("memory_util", 25.0, T0 + timedelta(seconds=1))]
    # The cache of the resource emptied: one more sample alone gives nothing.
    assert p2.process([gauge("memory", 2048, seconds=2)]) == []
    # Metadata access and a division by zero (counted, dropped, not raised).
    z = SamplePipeline(parse_pipeline({"sources": [{"name": "s", "meters": ["a", "b"], "sinks": ["k"]}],
                                       "sinks": [{"name": "k", "publishers": ["store://"], "transformers": [
                                           {"name": "arithmetic", "parameters": {"target": {
                                               "name": "r", "expr": "$(a) / $(b) + $(a).resource_metadata.bonus"}}}]}]}))
    assert z.process([gauge("a", 1, bonus=1), gauge("b", 0)]) == []
    assert [s.counter_volume for s in z.process([gauge("a", 1, 5, bonus=1), gauge("b", 4, 5)])] == [1.25]


def test_accumulator_holds_until_size_even_across_a_restart(tmp_path):
    defn = parse_pipeline({"sources": [{"name": "s", "meters": ["*"], "sinks": ["acc"]}],
                           "sinks": [{"name": "acc", "publishers": ["store://"],
                                      "transformers": [{"name": "accumulator", "parameters": {"size": 3}}]}]})
    p = SamplePipeline(defn, tmp_path)
    assert p.process([gauge("m", 1, 0), gauge("m", 2, 1)]) == []
    p.checkpoint()
    out = SamplePipeline(defn, tmp_path).process([gauge("m", 3, 2)])
    assert [s.counter_volume for s in out] == [1, 2, 3]


def test_aggregator_by_size_and_by_retention_time():
    p = pipeline([{"name": "agg", "transformers": [{"name": "aggregator", "parameters": {"size": 4}}]}])
    assert p.process([gauge("m", 1, 0), gauge("m", 3, 1), gauge("m", 10, 0, rid="other")]) == []
    out = p.process([gauge("m", 5, 2)])
    assert {s.resource_id: s.counter_volume for s in out} == {"vm-1": 3.0, "other": 10.0}
    assert next(s for s in out if s.resource_id == "vm-1").timestamp == T0  # timestamp: first

    r = pipeline([{"name": "agg", "transformers": [{"name": "aggregator", "parameters": {
        "size": 0, "retention_time": 60, "timestamp": "last"}}]}])
    assert r.process([gauge("m", 2, 0)], now=T0 + timedelta(seconds=1)) == []
    assert r.process([gauge("m", 4, 30)], now=T0 + timedelta(seconds=31)) == []
    out = r.process([], now=T0 + timedelta(seconds=61))
    assert [(s.counter_volume, s.timestamp) for s in out] == [(3.0, T0 + timedelta(seconds=30))]


@pytest.mark.parametrize("expr", [
    "__import__('os').system('true')",
    "().__class__.__bases__",
    "volume.__class__",
    "open('/etc/passwd')",
    "(lambda: 1)()",
    "[x for x in (1, 2)]",
    "volume[0:1]",
    "getattr(volume, 'real')",
])
def test_expressions_outside_the_whitelist_are_refused_at_load(expr):
    with pytest.raises(TransformExpressionError):
        Expression(expr)


def test_expression_evaluation_is_bounded_and_ceilometer_compatible():
    with pytest.raises(TransformExpressionError, match="exponent"):
        Expression("9 ** 9 ** 9").evaluate({})
    scale = Expression("100.0 / (10**9 * (resource_metadata.cpu_number or 1))")
    assert scale.evaluate({"resource_metadata": {}}) == 1e-7
    assert scale.evaluate({"resource_metadata": {"cpu_number": 4}}) == 2.5e-8
    assert Expression("volume if resource_metadata['kind'] == 'x' else -1").evaluate(
        {"volume": 3, "resource_metadata": {"kind": "x"}}) == 3
    assert Expression("max(volume, 10) + abs(-2)").evaluate({"volume": 3}) == 12


@pytest.mark.parametrize("expr,why", [("'a' * 10**9", "longer than"), ("[0] * 10**8", "longer than"),
                                      ("str(volume) * 20000", "longer than"), (" * ".join(["9**256"] * 6), "too large"),
                                      ("'ab' * 4000 + 'c' * 4000", "longer than")])
def test_expressions_cannot_build_huge_values(expr: str, why: str):
    """Issue 20: a pipeline scale of 'a'*10**9 built a gigabyte; products and sums are checked before they are built."""
    with pytest.raises(TransformExpressionError, match=why):
        Expression(expr).evaluate({"volume": 3})
    assert Expression("'ab' * 100 + 'c'").evaluate({}) == "ab" * 100 + "c"


def test_bad_pipeline_files_name_the_problem(tmp_path):
    def sink(**kw):
        return {"sources": [{"name": "s", "meters": ["*"], "sinks": ["k"]}],
                "sinks": [{"name": "k", "publishers": ["store://"], **kw}]}
    with pytest.raises(PipelineError, match="udp://"):
        parse_pipeline({**sink(), "sinks": [{"name": "k", "publishers": ["udp://1.2.3.4:4952"]}]})
    with pytest.raises(PipelineError, match="unknown transformer 'rate'"):
        parse_pipeline(sink(transformers=[{"name": "rate"}]))
    with pytest.raises(PipelineError, match=r"transformers\[0\] \(rate_of_change\)\.parameters\.target\.scale: .*may be called"):
        parse_pipeline(sink(transformers=[{"name": "rate_of_change",
                                          "parameters": {"target": {"scale": "__import__('os')"}}}]))
    with pytest.raises(PipelineError, match="undefined sinks: nope"):
        parse_pipeline({"sources": [{"name": "s", "meters": ["*"], "sinks": ["nope"]}],
                        "sinks": [{"name": "k", "publishers": ["store://"]}]})
    f = tmp_path / "p.yaml"
    f.write_text("sources: [")
    with pytest.raises(PipelineError, match="invalid YAML"):
        load_pipeline(f)
    # Ceilometer's own shipped pipeline.yaml loads unchanged.
    assert parse_pipeline({"sources": [{"name": "meter_source", "meters": ["*"], "sinks": ["meter_sink"]}],
                           "sinks": [{"name": "meter_sink", "publishers": ["gnocchi://"]}]})


def test_a_corrupt_state_file_costs_one_interval_not_the_daemon(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    p = SamplePipeline.from_file(DEFAULT, tmp_path)
    p.process([cpu(0, 0)])
    assert util(p.process([cpu(10, 5e9)])) == [25.0]
    p.checkpoint()
    assert (tmp_path / "state.json").read_bytes().startswith(b"{")


async def test_daemon_builds_the_pipeline_service(tmp_path):
    from telemetry.config import validate
    from telemetry.daemon import Daemon

    d = Daemon(validate({"data_dir": str(tmp_path), "api": {"port": 0},
                         "sources": {"ceilometer": {"enabled": False}}}), mode="server")
    rt = await d.start()
    try:
        p = rt.sample_pipeline
        assert p is not None
        p.process([cpu(0, 0)])
        p.checkpoint()
        assert (tmp_path / "pipeline" / "state.json").is_file()
    finally:
        await d.stop()
