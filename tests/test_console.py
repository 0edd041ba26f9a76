"""The web console (/ui) in a real headless Chromium (Debian's), against a running ``telemetry run``.

Playwright drives the system browser (``executable_path``); no browser is
ever downloaded. Each page is checked for what an operator does with it, at
1280x800, and its screenshot is written to docs/screenshots/.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import playwright.sync_api as playwright_api  # a test dependency (pyproject): missing is a failure, not a skip
import pytest
import yaml

from conftest import DaemonProcess
from support import wait_until

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
REQ = "req-7c1f0e52-3a4b-4d6e-9f10-2b3c4d5e6f70"
INSTANCE = "9d2c4e1a-6b7f-4a3c-8e5d-1f2a3b4c5d6e"
TRACEBACK = ("Instance failed to spawn\nTraceback (most recent call last):\n"
             '  File "/usr/lib/python3/dist-packages/nova/compute/manager.py", line 2743, in _build_resources\n'
             "    yield resources\nnova.exception.PortBindingFailed: Binding failed for port 4f1c, please check neutron logs")
MARKUP = '<img src=x onerror="document.title=1">GET /dashboard/?next=<script>1</script>'
ALARM = {"name": "cpu-high-vm1", "type": "threshold", "severity": "critical",
         "threshold_rule": {"meter_name": "cpu_util", "threshold": 75, "comparison_operator": "gt", "period": 60,
                            "evaluation_periods": 1, "query": [{"field": "resource_id", "op": "eq", "value": "vm1"}]}}

if not Path(CHROMIUM).exists():  # scripts/setup.sh installs it (DEBIAN_PEERS); say so instead of a cryptic failure
    pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh test (Debian packages chromium, chromium-driver)",
                pytrace=False)


def _when(seconds_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat()


def _events() -> list[dict[str, Any]]:
    """A boot that fails across nova and neutron, under one request id, plus background lines."""
    base = {"type": "openstack", "request_id": REQ, "instance_id": INSTANCE}
    out = [
        {**base, "@timestamp": _when(50), "host": "ctl01", "component": "nova", "level": "INFO",
         "logger": "nova.api.openstack.compute.servers", "message": "POST /v2.1/servers accepted"},
        {**base, "@timestamp": _when(49), "host": "ctl01", "component": "neutron", "level": "INFO",
         "logger": "neutron.wsgi", "message": "POST /v2.0/ports status: 201"},
        {**base, "@timestamp": _when(48), "host": "cn01", "component": "neutron", "level": "ERROR",
         "logger": "neutron.plugins.ml2.managers", "message": "Failed to bind port 4f1c on host cn01"},
        {**base, "@timestamp": _when(47), "host": "cn01", "component": "nova", "level": "ERROR",
         "logger": "nova.compute.manager", "message": TRACEBACK},
    ]
    for i in range(30):
        out.append({"@timestamp": _when(600 + i * 60), "host": f"cn0{i % 3}", "component": ("glance", "keystone")[i % 2],
                    "type": "openstack", "level": "INFO", "logger": "wsgi", "message": f"GET /v3/auth/tokens {i}"})
    out.append({"@timestamp": _when(3000), "host": "cn00", "component": "horizon", "type": "openstack", "level": "INFO",
                "logger": "django", "message": MARKUP})
    for ev in out:
        ev["id"] = str(uuid.uuid4())
    return out


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("console")
    rules = tmp / "rules"
    rules.mkdir()
    (rules / "edge.yaml").write_text(yaml.safe_dump({"hosts": ["sw1"], "triggers": [
        {"name": "switch down", "expression": "last(/sw1/icmpping)=0", "severity": "disaster"}]}))
    d = DaemonProcess(tmp, "run", {"rules": {"paths": [str(rules)], "tick": 0.2}, "store": {"ttl": {"events": "30d"}}})
    d.start()
    events = _events()
    assert httpx.post(d.url + "/v1/events", json=events, timeout=10).status_code == 202
    wait_until(lambda: len(httpx.get(d.url + "/v1/events", params={"limit": 1000}, timeout=5).json()) >= len(events),
               what="the posted events stored")
    yield d
    d.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


#: Requests some tests make fail on purpose (a query that does not parse, a wrong token).
EXPECTED = ("status of 400", "status of 401")


def _watch(pg: Any, errors: list[str]) -> None:
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")  # CSP violations and 404s land here
          if m.type == "error" and not any(x in m.text for x in EXPECTED) else None)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # Playwright's wait_for_function evaluates strings, which the console's own CSP forbids (as it should):
    # these tests lift it; test_every_page_runs_under_its_content_security_policy keeps it.
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    pg = ctx.new_page()
    errors: list[str] = []
    _watch(pg, errors)
    pg.on("request", lambda r: errors.append(f"external request {r.url}")
          if not r.url.startswith(("http://127.0.0.1", "http://[::1]", "data:", "blob:")) else None)
    yield pg
    ctx.close()
    assert not errors, errors  # no script error, nothing fetched from outside the daemon


def results(page: Any, state: str = "ok") -> int:
    """Rows shown once the Logs page finished its search (its count line says so), not while it renders."""
    page.wait_for_selector(f"#count[data-done={state}]")
    return int(page.locator("#rows tr.ev").count())


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_search_shows_the_matching_lines_and_histogram(daemon: DaemonProcess, page: Any) -> None:
    page.goto(daemon.url + "/ui#/logs?range=1h")
    results(page)
    page.fill("#q", "component:nova")
    page.press("#q", "Enter")
    page.wait_for_function("location.hash.includes('component')")
    assert results(page) == 2
    assert "2 events match" in page.text_content("#count")
    rows = page.locator("#rows tr.ev")
    times = [rows.nth(i).locator("td.t").text_content() for i in range(2)]
    assert times == sorted(times, reverse=True)  # newest first
    assert page.locator("#hist .uplot canvas").count() == 1  # uPlot drew the histogram
    # The traceback is folded under its first line; the level is coloured.
    details = rows.first.locator("details")
    assert "Instance failed to spawn" in details.locator("summary").text_content()
    assert not details.locator("pre").is_visible()
    assert rows.first.locator(".lvl-ERROR").count() == 1
    details.locator("summary").click()
    assert "PortBindingFailed" in details.locator("pre").text_content()
    # A facet adds a filter to the query.
    page.locator(".facet", has_text="level").get_by_role("button", name=re.compile("INFO")).click()
    page.wait_for_function("location.hash.includes('INFO')")
    assert results(page) == 1
    assert page.input_value("#q") == "(component:nova) AND level:INFO"
    # A query that does not parse says where, on the page, instead of showing nothing.
    page.fill("#q", "component:(nova")
    page.press("#q", "Enter")
    results(page, "error")
    assert "position" in page.text_content("#count .error")
    page.fill("#q", "")
    page.press("#q", "Enter")
    page.wait_for_function("!location.hash.includes('q=')")
    assert results(page) >= 5
    # A log line holding markup is shown as text, never run.
    assert page.locator("#rows tr.ev", has_text=MARKUP).count() == 1
    assert page.locator("#rows img, #rows script").count() == 0
    shot(page, "logs")


def test_dragging_over_the_histogram_zooms_and_live_tail_adds_new_lines(daemon: DaemonProcess, page: Any) -> None:
    page.goto(daemon.url + "/ui#/logs?range=1h")
    before = results(page)
    page.wait_for_selector("#hist .uplot canvas")
    box = page.locator("#hist .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.9, y)  # the last tenth of the hour: the request's four lines
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 1, y, steps=5)  # into the last bar, the current minute's
    page.mouse.up()
    page.wait_for_function("location.hash.includes('range=custom')")
    # The page is drawn again for the new hash after the hash changes: wait for it, not only for the hash.
    page.wait_for_function("document.querySelector('#range').value === 'custom'")
    assert page.input_value("#range") == "custom" and page.input_value("#start")
    assert 4 <= results(page) < before
    # Live tail: a line stored while the page is open appears at the top within a couple of polls.
    page.goto(daemon.url + "/ui#/logs?range=15m&q=component:cinder&tail=1")
    assert results(page) == 0 and page.is_checked("#tail")
    ev = {"@timestamp": _when(0), "host": "st01", "component": "cinder", "type": "openstack", "level": "WARNING",
          "message": "Volume attach retried", "id": str(uuid.uuid4())}
    assert httpx.post(daemon.url + "/v1/events", json=[ev], timeout=10).status_code == 202
    page.wait_for_selector("#rows tr.ev >> text=Volume attach retried", timeout=15000)


def test_a_request_id_traces_its_lines_across_services_in_time_order(daemon: DaemonProcess, page: Any) -> None:
    page.goto(daemon.url + "/ui#/logs?range=1h&q=" + "request_id:%22" + REQ + "%22")
    assert results(page) == 4
    page.locator("#rows tr.ev").first.get_by_role("link", name=REQ).click()
    page.wait_for_function("document.querySelectorAll('#trace-rows tr').length === 4")
    services = page.locator("#trace-rows td.svc").all_text_contents()
    assert services == ["nova", "neutron", "neutron", "nova"]
    offsets = [int(x) for x in page.locator("#trace-rows td.num").all_text_contents()]
    assert offsets == sorted(offsets) and offsets[0] == 0
    summary = page.text_content("#summary")
    assert "nova → neutron" in summary and "First error: neutron" in summary
    assert page.locator("#timeline .uplot canvas").count() == 1
    shot(page, "trace")


def test_an_alarm_goes_to_alarm_after_breaching_samples(daemon: DaemonProcess, page: Any) -> None:
    r = httpx.post(daemon.url + "/v2/alarms", json=ALARM, timeout=10)
    assert r.status_code == 201, r.text
    page.goto(daemon.url + "/ui#/alarms")
    row = page.locator("#alarm-table tr.alarm", has_text="cpu-high-vm1")
    assert row.locator(".state").text_content() == "insufficient data"
    now = datetime.now(timezone.utc)
    body = [{"counter_name": "cpu_util", "counter_type": "gauge", "counter_unit": "%", "counter_volume": v,
             "resource_id": "vm1", "message_id": str(uuid.uuid4()),
             "timestamp": (now - timedelta(seconds=s)).isoformat()} for s, v in ((240, 20), (180, 40), (120, 60), (1, 95))]
    assert httpx.post(daemon.url + "/v2/meters/cpu_util", json=body, timeout=10).status_code == 201
    page.wait_for_function("""[...document.querySelectorAll('#alarm-table tr.alarm')].some(
        r => r.textContent.includes('cpu-high-vm1') && r.querySelector('.state').textContent === 'alarm')""", timeout=20000)
    page.wait_for_function("document.getElementById('firing').textContent === '1'", timeout=15000)
    assert page.is_visible("#firing")
    row.get_by_role("button", name="History").click()
    page.wait_for_selector("#history tr")
    assert "state transition" in page.text_content("#history") or "alarm" in page.text_content("#history")


def test_a_trigger_is_acknowledged_from_the_console(daemon: DaemonProcess, page: Any) -> None:
    sample = [{"counter_name": "icmpping", "counter_type": "gauge", "counter_unit": "", "counter_volume": 0,
               "resource_id": "sw1", "resource_metadata": {"host": "sw1"}, "message_id": str(uuid.uuid4()),
               "timestamp": datetime.now(timezone.utc).isoformat()}]
    assert httpx.post(daemon.url + "/v2/meters/icmpping", json=sample, timeout=10).status_code == 201
    wait_until(lambda: [t for t in httpx.get(daemon.url + "/v1/triggers", timeout=5).json() if t["status"] == "PROBLEM"],
               what="the trigger in PROBLEM")
    page.goto(daemon.url + "/ui#/alarms")
    row = page.locator("#trigger-table tr.trigger", has_text="switch down")
    assert row.locator(".state").text_content() == "PROBLEM"
    row.get_by_role("button", name="Acknowledge").click()
    page.keyboard.type("on it, replacing the uplink")  # the comment box has the focus
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#trigger-table tr.trigger .acked').textContent.startsWith('yes')")
    [t] = [t for t in httpx.get(daemon.url + "/v1/triggers", timeout=5).json() if t["name"] == "switch down"]
    assert t["acknowledged"] and t["acknowledges"][-1]["message"] == "on it, replacing the uplink"
    # A silence created and deleted from the page.
    page.fill("#silence-form input[name=matchers]", "alarm_name=switch down")
    page.click("#silence-form button[type=submit]")
    page.wait_for_selector("#silences button.del")
    assert len(httpx.get(daemon.url + "/v1/silences", timeout=5).json()) == 1
    shot(page, "alarms")
    page.click("#silences button.del")
    wait_until(lambda: httpx.get(daemon.url + "/v1/silences", timeout=5).json() == [], what="the silence deleted")


def test_a_meter_chart_shows_its_statistics(daemon: DaemonProcess, page: Any) -> None:
    now = datetime.now(timezone.utc)
    body = [{"counter_name": "memory.usage", "counter_type": "gauge", "counter_unit": "MB", "counter_volume": 500 + 10 * i,
             "resource_id": "vm2", "message_id": str(uuid.uuid4()),
             "timestamp": (now - timedelta(seconds=60 * i + 5)).isoformat()} for i in range(30)]
    assert httpx.post(daemon.url + "/v2/meters/memory.usage", json=body, timeout=10).status_code == 201
    wait_until(lambda: len(httpx.get(daemon.url + "/v2/meters/memory.usage", timeout=5).json()) == 30, what="samples")
    page.goto(daemon.url + "/ui#/meters?meter=memory.usage&resource=vm2&range=1h&period=300")
    page.wait_for_selector("#mchart .uplot canvas")
    assert "memory.usage" in page.text_content("#mtitle") and "(MB)" in page.text_content("#mtitle")
    stats = page.locator("#stats tbody tr")
    assert stats.count() >= 6
    assert page.locator("#mchart .u-legend").text_content().count("max") == 1
    shot(page, "meters")
    # The statistics' own query fields narrow it, written as `telemetry statistics -q` takes them.
    page.fill("#mq", "project_id=someone-else")
    page.press("#mq", "Enter")
    page.wait_for_selector("#mtitle:has-text('0 periods')")
    assert page.locator("#stats tbody tr").count() == 0
    page.fill("#mq", "resource_id")
    page.press("#mq", "Enter")
    page.wait_for_selector("#mtitle .error:has-text('bad query term')")


def test_pipeline_shows_components_and_live_rates(daemon: DaemonProcess, page: Any) -> None:
    page.goto(daemon.url + "/ui#/pipeline")
    page.wait_for_selector("#components td")
    states = dict(zip(page.locator("#components tbody td:first-child").all_text_contents(),
                      page.locator("#components tbody .state").all_text_contents()))
    assert states["stage.events"] == "running" and states["api"] == "running", states
    page.wait_for_selector("#stages tr.stage", timeout=15000)  # a second reading gives the first rates
    # Traffic while the page watches: the events stage's rate in becomes positive within a few readings.
    batch = [{"@timestamp": _when(1), "host": "cn09", "component": "nova", "type": "openstack", "level": "INFO",
              "message": f"pipeline probe {i}", "id": str(uuid.uuid4())} for i in range(300)]
    assert httpx.post(daemon.url + "/v1/events", json=batch, timeout=10).status_code == 202
    page.wait_for_function("""(() => { const r = document.querySelector('#stages tr[data-stage="stage.events"]');
        return r && parseFloat(r.children[1].textContent) > 0; })()""", timeout=20000)
    page.wait_for_selector("#pchart .uplot canvas")
    shot(page, "pipeline")


def test_the_pages_work_from_the_keyboard(daemon: DaemonProcess, page: Any) -> None:
    page.goto(daemon.url + "/ui#/logs?range=1h")
    results(page)
    names = []
    for _ in range(4):  # skip link, then the navigation in order
        page.keyboard.press("Tab")
        names.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert names[1:] == ["Logs", "Trace", "Alarms"] or names[1].startswith("Logs"), names
    page.keyboard.press("Tab")  # Meters
    page.keyboard.press("Enter")
    page.wait_for_selector("#meter-form")
    assert page.url.endswith("#/meters")
    page.goto(daemon.url + "/ui#/logs?range=1h")
    results(page)
    page.focus("#q")
    page.keyboard.type("level:ERROR")
    page.keyboard.press("Enter")
    page.wait_for_function("location.hash.includes('ERROR')")
    assert results(page) == 2
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # nothing spills sideways at 1280x800


def test_every_page_runs_under_its_content_security_policy(daemon: DaemonProcess, browser: Any) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = ctx.new_page()
    errors: list[str] = []
    _watch(pg, errors)
    for where, ready in (("logs?range=1h", "#count[data-done=ok]"), (f"trace?request_id={REQ}", "#timeline canvas"),
                         ("alarms", "#trigger-table"), ("meters?meter=memory.usage", "#mchart canvas"),
                         ("pipeline", "#stages tr.stage")):
        pg.goto(f"{daemon.url}/ui#/{where}")
        pg.wait_for_selector(ready, timeout=15000)
    ctx.close()
    assert not errors, errors


def test_with_tokens_the_console_asks_for_one_and_sends_it(tmp_path: Path, browser: Any) -> None:
    d = DaemonProcess(tmp_path, "run", {"api": {"port": 0, "tokens": ["s3cret-token"]}}).start()
    try:
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        pg = ctx.new_page()
        sent: list[str | None] = []
        pg.on("request", lambda r: sent.append(r.headers.get("authorization")) if "/v1/silences" in r.url else None)
        pg.goto(d.url + "/ui#/alarms")
        pg.wait_for_selector("#login[open]")
        assert pg.inner_html("#main") == ""  # nothing shows without a token
        pg.fill("#login-token", "wrong")
        pg.press("#login-token", "Enter")
        pg.wait_for_selector("#login-error:has-text('not one of')")
        pg.fill("#login-token", "s3cret-token")
        pg.press("#login-token", "Enter")
        pg.wait_for_selector("#silence-form")
        pg.fill("#silence-form input[name=matchers]", "host=cn01")
        pg.click("#silence-form button[type=submit]")
        pg.wait_for_selector("#silences button.del")
        assert "Bearer s3cret-token" in sent
        ctx.close()
    finally:
        d.stop()
        shutil.rmtree(tmp_path / "data", ignore_errors=True)
