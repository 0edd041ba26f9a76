"""`telemetry run` as a real subprocess: start, health, metrics, clean stop."""

from __future__ import annotations

import signal
import time

import httpx


def test_run_starts_reports_and_stops(daemon_factory) -> None:
    d = daemon_factory(config={"sources": {"host_metrics": {"interval": "1s"}}})
    t0 = time.monotonic()
    health = d.start().wait_healthy()
    assert time.monotonic() - t0 < 5.0, "telemetry run must start in under 5 s"
    assert health["status"] == "ok", health
    assert {"api", "source.host_metrics"} <= health["components"].keys()
    assert all(c["state"] == "running" for c in health["components"].values())

    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(d.url + "/metrics").text
        if "telemetry_host_samples_collected_total" in text and any(
            line.startswith("telemetry_host_samples_collected_total") and not line.endswith(" 0.0")
            for line in text.splitlines()
        ):
            break
        time.sleep(0.3)
    else:
        raise AssertionError("no host samples counted on /metrics:\n" + text)
    names = [line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert names and all(n.startswith("telemetry_") for n in names), names
    assert 'telemetry_stage_records_out_total{stage="source.host_metrics"}' in text
    assert 'telemetry_bus_published_records_total{topic="samples"}' in text

    t1 = time.monotonic()
    assert d.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t1 < 5.0, "SIGTERM must stop the daemon within 5 s"
    out = d.output()
    assert "Traceback" not in out, out
    assert str(d.tmp / "data") in out  # the banner says where data lives
    assert (d.tmp / "data").is_dir()


def test_sigint_stops_cleanly(daemon_factory) -> None:
    d = daemon_factory()
    d.start()
    assert d.stop(signal.SIGINT) == 0
    assert "Traceback" not in d.output()


def test_port_in_use_is_a_clear_error(daemon_factory) -> None:
    a = daemon_factory().start()
    b = daemon_factory(config={"api": {"port": a.port}})
    b.start(wait=False)
    assert b.proc.wait(timeout=15) != 0
    assert "Address already in use" in b.output() or "address already in use" in b.output().lower()
    a.stop()


def test_broken_config_is_not_a_traceback(daemon_factory) -> None:
    d = daemon_factory(config={"api": {"port": "http"}})
    d.start(wait=False)
    assert d.proc.wait(timeout=15) == 2
    out = d.output()
    assert "api.port" in out and "Traceback" not in out
