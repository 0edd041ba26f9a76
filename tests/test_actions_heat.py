"""Heat-style flow: a scaling policy's signal endpoint gets one POST per cooldown period."""

from __future__ import annotations

import asyncio
import time

from actions_support import Harness, KeystoneTrusts, Receiver, transition

from telemetry.actions.heat import HeatNotifier, cooldown_key

ARN = "/v1/signal/arn%3Aopenstack%3Aheat%3A%3Aproj%3Astacks%2Fweb%2Fs-1%2Fresources%2Fscaleup_policy"


def presigned(base: str, ts: int = 1) -> str:
    return (f"{base}{ARN}?Timestamp=2026-03-02T10%3A00%3A0{ts}Z&SignatureMethod=HmacSHA256"
            f"&AWSAccessKeyId=ak&SignatureVersion=2&Signature=sig{ts}%3D")


def test_heat_urls_are_recognised():
    assert HeatNotifier.claims(presigned("http://heat-cfn:8000"))
    assert HeatNotifier.claims("trust+http://heat:8004/v1/p/stacks/web/s-1/resources/up/signal")
    assert not HeatNotifier.claims("http://example.org/hook")
    assert cooldown_key(presigned("http://h:1", 1)) == cooldown_key(presigned("http://h:1", 2))


async def test_breaching_alarm_signals_once_per_cooldown(tmp_path):
    heat = await Receiver().start()
    cooldown = 1.0
    h = await Harness(tmp_path, heat={"cooldown": cooldown}).start()
    try:
        url = presigned(heat.url)
        # The rule engine re-fires alarm actions on every evaluation while breached (repeat_actions: true):
        # one transition every 0.1 s for 2.5 s, i.e. 25 breaching evaluations.
        start = time.time()
        for i in range(25):
            prev = "ok" if i == 0 else "alarm"
            await h.publish(transition(alarm_id="scale-up", alarm_name="web_cpu_high", previous=prev,
                                       current="alarm", repeat_actions=True, actions=[url],
                                       timestamp=f"2026-03-02T10:00:{i:02d}Z"))
            await asyncio.sleep(0.1)
        window = time.time() - start
        await h.drained()
        reqs = heat.requests
        # Exactly one POST per cooldown period while the alarm keeps breaching. The machine may be
        # loaded, so the periods are replayed from the times the dispatcher saw each breach: a breach
        # signals when the last signal is at least one cooldown old, and is suppressed otherwise.
        seen = sorted([(r["created_at"], True) for r in h.d.outbox.db.execute("SELECT created_at FROM outbox")]
                      + [(x.time.timestamp(), False) for x in h.log() if x.status == "suppressed:cooldown"])
        assert len(seen) == 25
        last = None
        for at, sent in seen:
            should = last is None or at - last >= cooldown
            assert sent == should, (at - (last or at), sent)
            last = at if sent else last
        assert len(reqs) == sum(sent for _, sent in seen)
        assert 2 <= len(reqs) <= int(window / cooldown) + 1, (len(reqs), window)
        # Receiver side: never two signals within a period (breaches come 0.1 s apart, so a second signal
        # in one period would arrive ~0.1 s after the first; the slack absorbs delivery-latency jitter).
        gaps = [b["at"] - a["at"] for a, b in zip(reqs, reqs[1:])]
        assert all(g >= cooldown / 2 for g in gaps), gaps
        r = reqs[0]
        assert r["path"].startswith("/v1/signal/arn:openstack:heat::proj:stacks")
        assert r["query"].endswith("&Signature=sig1%3D")  # the pre-signed URL is posted exactly as Heat issued it
        assert r["json"]["alarm_id"] == "scale-up" and r["json"]["current"] == "alarm"
        cool = [x for x in h.log() if x.status == "suppressed:cooldown"]
        assert len(cool) == 25 - len(reqs)
        assert all("Signature=***" in x.target for x in h.log())  # the signature never reaches the log
    finally:
        await h.stop()
        await heat.stop()


async def test_signal_url_with_keystone_token(tmp_path):
    keystone = await Receiver(default=201, reply={"token": {"expires_at": "2099-01-01T00:00:00Z"}},
                              reply_headers={"X-Subject-Token": "tok-123"}).start()
    heat = await Receiver().start()
    h = await Harness(tmp_path, heat={"cooldown": 60, "keystone": {
        "auth_url": keystone.url + "/v3", "username": "aodh", "password": "pw", "project_name": "service"}}).start()
    try:
        signal = f"trust+{heat.url}/v1/p/stacks/web/s-1/resources/scaleup_policy/signal"
        await h.publish(transition(actions=[signal]))
        (req,) = await heat.wait(1)
        assert req["path"] == "/v1/p/stacks/web/s-1/resources/scaleup_policy/signal"
        assert req["headers"]["x-auth-token"] == "tok-123"
        auth = keystone.requests[0]["json"]["auth"]
        assert auth["identity"]["password"]["user"]["name"] == "aodh"
        assert auth["scope"]["project"]["name"] == "service"
    finally:
        await h.stop()
        await heat.stop()
        await keystone.stop()


async def test_trust_url_signals_with_a_trust_scoped_token_from_keystoneauth1(tmp_path):
    """As Aodh: ``trust+http://TRUST:delete@heat/...`` is signalled with a token of the service user scoped to that
    trust (the alarm owner's project), fetched once and reused, fetched again when Heat says 401."""
    keystone = await KeystoneTrusts({"aodh": "svc-pw"}, {"tr-1": ("aodh", "proj-web"), "tr-other": ("nova", "p")}
                                    ).start()
    heat = await Receiver(script=[200, 200, 401]).start()
    h = await Harness(tmp_path, heat={"cooldown": 0, "keystone": {
        "auth_url": keystone.url, "username": "aodh", "password": "svc-pw", "project_name": "service"}}).start()
    try:
        base = heat.url.replace("http://", "http://tr-1:delete@")
        up, down = (f"trust+{base}/v1/proj-web/stacks/web/s-1/resources/{p}/signal" for p in ("up", "down"))
        await h.publish(transition(alarm_id="a-up", actions=[up]))
        (first,) = await heat.wait(1)
        assert first["path"] == "/v1/proj-web/stacks/web/s-1/resources/up/signal"
        assert "authorization" not in first["headers"]  # the trust never travels as Basic credentials
        token = keystone.issued[first["headers"]["x-auth-token"]]
        assert token["OS-TRUST:trust"]["id"] == "tr-1" and token["project"]["id"] == "proj-web"
        [ask] = keystone.requests
        assert ask["json"]["auth"]["scope"] == {"OS-TRUST:trust": {"id": "tr-1"}}  # the trust's scope, no project
        assert ask["json"]["auth"]["identity"]["password"]["user"]["name"] == "aodh"

        # Another policy under the same trust: the token is reused. Then Heat answers 401 (revoked): a new token
        # is fetched and the retry goes through with it.
        await h.publish(transition(alarm_id="a-down", actions=[down]))
        await heat.wait(2)
        assert heat.requests[1]["headers"]["x-auth-token"] == first["headers"]["x-auth-token"]
        assert len(keystone.requests) == 1
        await h.publish(transition(alarm_id="a-up-2", actions=[up]))
        await heat.wait(4)
        assert heat.requests[2]["headers"]["x-auth-token"] == first["headers"]["x-auth-token"]
        assert heat.requests[3]["headers"]["x-auth-token"] not in ("", first["headers"]["x-auth-token"])
        assert len(keystone.requests) == 2
        await h.drained()
        assert [x.status for x in h.log(alarm_id="a-up-2")][0] == "delivered"

        # A trust that is gone, or that names another trustee: a permanent failure, Heat never called.
        for alarm, trust, words in (("a-gone", "tr-gone", "NotFound (HTTP 404)"),
                                    ("a-theirs", "tr-other", "Forbidden (HTTP 403)")):
            gone = f"trust+{heat.url.replace('http://', f'http://{trust}@')}/v1/p/stacks/s/x/resources/r/signal"
            await h.publish(transition(alarm_id=alarm, actions=[gone]))
            await h.drained()
            [row] = h.log(alarm_id=alarm)
            assert row.status == "dead" and "trust-scoped token" in row.error and words in row.error, row
        assert len(heat.requests) == 4
        # A trust+ URL without a trust: the service user's project-scoped token, as before.
        await h.publish(transition(alarm_id="a-proj", actions=[f"trust+{heat.url}/v1/service/stacks/s/x/signal"]))
        await heat.wait(5)
        assert keystone.issued[heat.requests[4]["headers"]["x-auth-token"]]["project"]["id"] == "service"
        assert keystone.requests[-1]["json"]["auth"]["scope"]["project"]["name"] == "service"
    finally:
        await h.stop()
        await heat.stop()
        await keystone.stop()
