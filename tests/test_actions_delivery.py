"""Delivery guarantees against real loopback receivers: retries, no retry on 4xx, restarts, dedup."""

from __future__ import annotations

import asyncio

from actions_support import Harness, Receiver, transition
from conftest import free_port

from telemetry.actions.delivery import DEAD_LETTERS, backoff, retry_after
from telemetry.metrics import exposition


async def test_fails_twice_then_succeeds_is_delivered_once(tmp_path):
    rx = await Receiver(script=[500, 503]).start()
    h = await Harness(tmp_path).start()
    try:
        await h.publish(transition(actions=[rx.url + "/hook"]))
        await rx.wait(3)
        await h.drained()
        assert [r["json"]["alarm_id"] for r in rx.requests] == ["a-1"] * 3
        assert len(rx.requests) == 3  # two failures, then exactly one success
        ids = {r["headers"]["x-telemetry-delivery"] for r in rx.requests}
        assert len(ids) == 1  # the same delivery id each time: receivers can dedup
        log = h.log()
        assert [r.status for r in reversed(log)] == ["retry", "retry", "delivered"]
        assert [r.attempts for r in reversed(log)] == [1, 2, 3]
        assert log[0].http_status == 200
    finally:
        await h.stop()
        await rx.stop()


async def test_4xx_is_not_retried_and_dead_lettered(tmp_path):
    rx = await Receiver(default=404).start()
    before = DEAD_LETTERS.labels(notifier="webhook")._value.get()
    h = await Harness(tmp_path).start()
    try:
        await h.publish(transition(actions=[rx.url + "/gone"]))
        await rx.wait(1)
        await h.drained()
        assert len(rx.requests) == 1
        dead = h.d.outbox.dead_letters()
        assert len(dead) == 1 and dead[0]["last_status"] == 404 and "not retried" in dead[0]["last_error"]
        assert DEAD_LETTERS.labels(notifier="webhook")._value.get() == before + 1
        assert b"telemetry_actions_dead_letters_total" in exposition()
    finally:
        await h.stop()
        await rx.stop()


async def test_retries_exhausted_go_to_dead_letters(tmp_path):
    rx = await Receiver(default=502).start()
    h = await Harness(tmp_path, max_attempts=3).start()
    try:
        await h.publish(transition(actions=[rx.url]))
        await rx.wait(3)
        await h.drained()
        assert len(rx.requests) == 3
        assert h.d.outbox.dead_letters()[0]["attempts"] == 3
        assert h.log()[0].status == "dead"
    finally:
        await h.stop()
        await rx.stop()


async def test_429_waits_for_retry_after(tmp_path):
    rx = await Receiver(script=[(429, {"Retry-After": "1"})]).start()
    h = await Harness(tmp_path, backoff_max=5).start()
    try:
        await h.publish(transition(actions=[rx.url]))
        reqs = await rx.wait(2)
        assert reqs[1]["at"] - reqs[0]["at"] >= 0.95
    finally:
        await h.stop()
        await rx.stop()


async def test_receiver_down_across_restart_still_gets_it(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    h = await Harness(tmp_path, backoff_initial=0.2, backoff_max=0.3, max_attempts=50).start()
    await h.publish(transition(actions=[url]))
    for _ in range(100):  # wait until it is in the outbox and has failed at least once
        if h.log(status="retry"):
            break
        await asyncio.sleep(0.05)
    assert h.log(status="retry"), "the first attempt should have failed (receiver down)"
    await h.stop()  # our server restarts; the bus message was acked, only the outbox has it

    h2 = Harness(tmp_path, backoff_initial=0.2, backoff_max=0.3, max_attempts=50)  # same data_dir, fresh bus
    rx = await Receiver(port=port).start()
    await h2.start()
    try:
        reqs = await rx.wait(1)
        await h2.drained()
        assert len(reqs) == 1 and reqs[0]["json"]["alarm_name"] == "cpu_high"
        assert h2.log()[0].status == "delivered"
    finally:
        await h2.stop()
        await rx.stop()


async def test_redelivered_transition_is_sent_once(tmp_path):
    rx = await Receiver().start()
    h = await Harness(tmp_path).start()
    try:
        t = transition(actions=[rx.url])
        await h.publish(t, t)  # the bus may deliver twice (at-least-once)
        await rx.wait(1)
        await h.drained()
        assert len(rx.requests) == 1
    finally:
        await h.stop()
        await rx.stop()


async def test_unknown_scheme_and_blocked_targets_are_logged_not_sent(tmp_path):
    rx = await Receiver().start()
    # A server with tokens: this host's addresses are not reachable by API alarms unless listed.
    h = await Harness(tmp_path, api={"tokens": ["t"]}, allowed_targets=[]).start()
    try:
        await h.publish(transition(actions=["gopher://x", rx.url, "http://169.254.169.254/latest/meta-data"]))
        await h.settle()
        statuses = sorted(r.status for r in h.log())
        assert statuses == ["blocked", "blocked", "rejected"]
        assert not rx.requests
        # The operator's own rule files are trusted: no allow-list check.
        await h.publish(transition(alarm_id="a-2", actions=[rx.url], origin="file"))
        await rx.wait(1)
        # An allow-list entry set through the API opens the loopback receiver for API alarms too.
        h.d.set_allowlist(["127.0.0.1/32"])
        await h.publish(transition(alarm_id="a-3", actions=[rx.url]))
        await rx.wait(2)
    finally:
        await h.stop()
        await rx.stop()


def test_backoff_grows_with_jitter_and_honours_retry_after():
    delays = [backoff(a, 1, 60) for a in range(1, 8)]
    assert 0.5 <= delays[0] <= 1 and 16 <= delays[5] <= 32 and delays[6] <= 60
    assert backoff(1, 1, 60, hint=30) >= 30
    assert retry_after("120") == 120 and retry_after("soon") is None
