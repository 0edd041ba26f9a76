"""Dead letters end to end: a refused record is kept with its reason, listed, shown, replayed, deleted."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import httpx

from telemetry.bus import OutMessage
from telemetry.config import Settings
from telemetry.daemon import Daemon
from telemetry.deadletters.store import DeadLetterStore
from telemetry.models import Event, encode

TOKEN = "dl-s3cret"
READER = "dl-reader"


async def test_a_refused_record_is_kept_listed_shown_replayed_and_deleted(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api={"port": 0, "tokens": [TOKEN, {"token": READER, "scope": "read"}]},
                        sources={"files": [], "host_metrics": {"enabled": False}, "ceilometer": {"enabled": False}})
    daemon = Daemon(settings, mode="run")
    rt = await daemon.start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        assert rt.api_address and rt.event_store is not None
        good = Event(**{"@timestamp": datetime.now(timezone.utc)}, host="cn01", component="nova", message="fine")
        await rt.bus.publish("events", [OutMessage(b'{"@timestamp": "not a time", "host": 5}'),
                                        OutMessage(encode(good))])
        async with httpx.AsyncClient(base_url=rt.api_address, headers={"X-Auth-Token": READER}) as api:
            letters: list = []

            async def poll() -> None:
                letters[:] = (await api.get("/v1/dead-letters")).json()

            for _ in range(100):  # until both readers of `events` refused it
                await poll()
                if letters and "," in letters[0]["stage"]:
                    break
                await asyncio.sleep(0.05)  # 100 polls: about 5 s for both readers (wait_for on True never slept)
            assert letters, "the refused event never reached the dead letters"
            [letter] = letters
            # both readers of `events` refused it: one letter names them, a replay reaches both again
            assert set(letter["stage"].split(",")) == {"stage.events", "stage.rules"} and letter["topic"] == "events"
            assert letter["reason"].startswith("invalid:") and "not a time" in letter["preview"]
            assert rt.event_store.search("message:fine")  # the good one beside it was stored

            cli = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "telemetry", "dead-letter-list", "--url", rt.api_address,
                                 "--token", READER, "-f", "json"], capture_output=True, text=True, timeout=60)
            assert cli.returncode == 0 and json.loads(cli.stdout)[0]["id"] == letter["id"], cli.stderr
            cli = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "telemetry", "dead-letter-show", letter["id"], "--url",
                                 rt.api_address, "--token", READER], capture_output=True, text=True, timeout=60,
                env={**os.environ, "COLUMNS": "200"})
            assert cli.returncode == 0 and "invalid:" in cli.stdout and "not a time" in cli.stdout, cli.stderr
            shown = (await api.get(f"/v1/dead-letters/{letter['id']}")).json()
            assert shown["encoding"] == "json" and shown["value"].startswith('{"@timestamp"')
            assert (await api.get("/v1/dead-letters", params={"reason": "invalid:"})).json()
            assert not (await api.get("/v1/dead-letters", params={"stage": "stage.parse"})).json()

            assert (await api.post(f"/v1/dead-letters/{letter['id']}/replay")).status_code == 403  # a read token
            assert (await api.post(f"/v1/dead-letters/{letter['id']}/replay",
                                   headers={"X-Auth-Token": "wrong"})).status_code == 401
            r = await api.post(f"/v1/dead-letters/{letter['id']}/replay", headers=auth)
            assert r.status_code == 202 and r.json()["topic"] == "events"
            # still bad: refused again, kept once, its replay counted
            again = await api.get(f"/v1/dead-letters/{letter['id']}")
            assert again.json()["replays"] == 1
            assert len((await api.get("/v1/dead-letters")).json()) == 1

            assert (await api.delete(f"/v1/dead-letters/{letter['id']}", headers=auth)).status_code == 204
            assert (await api.get(f"/v1/dead-letters/{letter['id']}")).status_code == 404
    finally:
        await daemon.stop()


def test_expiry_drops_letters_past_their_ttl(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, ttl=3600)
    assert store.add([("stage.x", "events", "invalid:host", "", None, b"{}")], now=1000.0) == 1
    assert store.add([("stage.x", "events", "invalid:host", "", None, b"{}")], now=1001.0) == 0  # redelivered: kept once
    store.add([("stage.x", "events", "invalid:host", "", None, b"[]")], now=5000.0)
    assert store.expire(now=5000.0) == 1
    assert [d.value for d in store.list()] == [b"[]"]
    store.close()
