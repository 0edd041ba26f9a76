"""BusStage: ack only after a durable write, retry on failure, dead-letter bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

from telemetry.bus import DURABLE, BusError, MemoryBus, OutMessage, Receipt
from telemetry.bus.records import publish_records
from telemetry.config import Settings
from telemetry.runtime import Runtime
from telemetry.models import Sample
from telemetry.stage import DEAD_LETTER_TOPIC, BusStage
from tests.support import wait_for


class Recorder(BusStage):
    name = "test.recorder"
    topics = {"samples": Sample}

    def __init__(self, runtime: Runtime, fail_times: int = 0) -> None:
        super().__init__(runtime)
        self.fail_times = fail_times
        self.written: list[str] = []

    async def handle(self, records) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise OSError("disk full")
        self.written.extend(r.message_id for _, r in records)


def runtime(tmp: Path) -> Runtime:
    bus = MemoryBus()
    return Runtime(settings=Settings(data_dir=tmp), mode="server", bus=bus, data_dir=tmp)


def sample(i: int) -> Sample:
    return Sample(counter_name="m", counter_type="gauge", counter_volume=i, resource_id=f"r{i}", timestamp=i)




async def test_failed_write_is_retried_not_lost(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    stage = Recorder(rt, fail_times=2)
    await stage.start()
    await publish_records(rt.bus, [sample(i) for i in range(5)])
    await wait_for(lambda: len(stage.written) == 5)
    assert stage.restarts == 0  # a failed write is retried, the loop itself does not crash
    await stage.stop()


async def test_bad_records_are_dead_lettered_and_good_ones_pass(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    dead = await rt.bus.subscribe([DEAD_LETTER_TOPIC], "inspect")
    stage = Recorder(rt)
    await stage.start()
    good = sample(1)
    await rt.bus.publish("samples", [OutMessage(b"not json at all"), OutMessage(good.to_json()),
                                     OutMessage(b'{"counter_name": "x"}')])
    await wait_for(lambda: stage.written == [good.message_id] and stage.rejected == 2)
    got = await dead.fetch(10, timeout=1)
    reasons = sorted(d.headers["reason"] for d in got)
    assert reasons[0].startswith("invalid:") and reasons[1].startswith("undecodable:")
    assert all(d.headers["stage"] == "test.recorder" for d in got)
    await stage.stop()


async def test_unacked_batch_returns_when_stage_stops(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    stage = Recorder(rt, fail_times=10**6)  # never manages to write
    await stage.start()
    await publish_records(rt.bus, [sample(1)])
    await asyncio.sleep(0.2)
    await stage.stop()
    again = Recorder(rt)
    await again.start()
    await wait_for(lambda: again.written == [sample(1).message_id])
    await again.stop()


class Picky(BusStage):
    """Fails any batch holding a sample of volume 13 (a poison record), as a bad value would."""

    name = "test.picky"
    topics = {"samples": Sample}

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.written: list[str] = []
        self.calls = 0

    async def handle(self, records) -> None:
        self.calls += 1
        if any(r.counter_volume == 13 for _, r in records):
            raise ValueError("Integer exceeds 64-bit range")
        self.written.extend(r.message_id for _, r in records)


async def test_a_poison_record_is_found_dead_lettered_and_the_rest_flow(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    dead = await rt.bus.subscribe([DEAD_LETTER_TOPIC], "inspect")
    stage = Picky(rt)
    await stage.start()
    batch = [sample(i) for i in range(40)]
    await publish_records(rt.bus, batch)
    await wait_for(lambda: len(stage.written) == 39, what="the 39 good samples")
    [letter] = await dead.fetch(10, timeout=1)
    assert letter.headers["reason"] == "failed:ValueError" and "64-bit" in letter.headers["error"]
    assert letter.headers["stage"] == "test.picky" and letter.headers["topic"] == "samples"
    assert Sample.from_json(letter.value).counter_volume == 13
    assert stage.calls < 20  # found by halving, not one record at a time
    # what comes after it is not held back
    await publish_records(rt.bus, [sample(100)])
    await wait_for(lambda: sample(100).message_id in stage.written)
    await stage.stop()


async def test_a_failing_disk_is_retried_not_dead_lettered_and_reported(tmp_path: Path, monkeypatch) -> None:
    import telemetry.stage

    monkeypatch.setattr(telemetry.stage, "DEGRADED_AFTER", 0.3)
    rt = runtime(tmp_path)
    dead = await rt.bus.subscribe([DEAD_LETTER_TOPIC], "inspect")
    stage = Recorder(rt, fail_times=10**6)  # OSError("disk full") every time
    await stage.start()
    stage.mark("running")
    await publish_records(rt.bus, [sample(i) for i in range(3)])
    await wait_for(lambda: stage.problem() is not None, what="the stage to report the failure")
    assert "disk full" in stage.health()["problem"]
    assert not await dead.fetch(10, timeout=0.3)  # good records are never dead-lettered for a full disk
    stage.fail_times = 0  # the disk has room again
    await wait_for(lambda: len(stage.written) == 3, timeout=15, what="the retried batch")
    await wait_for(lambda: stage.problem() is None, what="the problem to clear")
    await stage.stop()


class BatchRecorder(Recorder):
    """Keeps the size of each batch handed to it and when it came."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.batches: list[tuple[int, float]] = []

    async def handle(self, records) -> None:
        self.batches.append((len(records), asyncio.get_running_loop().time()))
        await super().handle(records)


async def test_a_short_batch_waits_briefly_for_more_and_a_full_one_goes_at_once(tmp_path: Path) -> None:
    """Records arriving within batch_delay of a short fetch join it; a full batch does not wait; a lone
    short one goes once the delay has passed, not later."""
    rt = runtime(tmp_path)
    stage = BatchRecorder(rt)
    stage.batch_size, stage.batch_delay = 20, 3.0
    await stage.start()
    loop = asyncio.get_running_loop()
    await publish_records(rt.bus, [sample(i) for i in range(10)])
    await asyncio.sleep(0.3)
    await publish_records(rt.bus, [sample(i) for i in range(10, 20)])
    await wait_for(lambda: len(stage.written) == 20)
    assert [n for n, _ in stage.batches] == [20]  # one batch of both arrivals, and it was full: no wait
    t0 = loop.time()
    await publish_records(rt.bus, [sample(i) for i in range(20, 40)])  # a full batch at once
    await wait_for(lambda: len(stage.written) == 40)
    assert stage.batches[-1][0] == 20 and stage.batches[-1][1] - t0 < 2.0
    t0 = loop.time()
    await publish_records(rt.bus, [sample(i) for i in range(40, 43)])  # then nothing: goes after the delay
    await wait_for(lambda: len(stage.written) == 43, timeout=10)
    assert stage.batches[-1][0] == 3 and 2.5 < stage.batches[-1][1] - t0 < 6.0
    await stage.stop()


async def test_a_short_batch_past_fill_below_goes_at_once(tmp_path: Path) -> None:
    """A batch short of batch_size but of at least fill_below records does not wait batch_delay (the
    event stage's, whose writer idled through the wait after every commit); a smaller one still does."""
    rt = runtime(tmp_path)
    stage = BatchRecorder(rt)
    stage.batch_size, stage.batch_delay, stage.fill_below = 100, 3.0, 10
    await stage.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await publish_records(rt.bus, [sample(i) for i in range(12)])
    await wait_for(lambda: len(stage.written) == 12)
    assert stage.batches[-1][0] == 12 and stage.batches[-1][1] - t0 < 2.0
    t0 = loop.time()
    await publish_records(rt.bus, [sample(i) for i in range(12, 15)])
    await wait_for(lambda: len(stage.written) == 15, timeout=10)
    assert stage.batches[-1][0] == 3 and stage.batches[-1][1] - t0 > 2.5
    await stage.stop()


class Overlapping(Recorder):
    """Each handle takes a while and notes how many ran at once; the first fails once (a full disk)."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime, fail_times=1)
        self.running = self.most = 0

    async def handle(self, records) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.2)
            await super().handle(records)
        finally:
            self.running -= 1


async def test_two_batches_in_hand_at_once_and_a_failed_one_still_retried(tmp_path: Path) -> None:
    """handle_depth 2: the next batch is handled while the one before still is (the stages waiting on a
    child process); a batch that fails for its surroundings goes back to the bus and comes again."""
    rt = runtime(tmp_path)
    stage = Overlapping(rt)
    stage.handle_depth, stage.batch_size, stage.batch_delay = 2, 5, 0
    await stage.start()
    await publish_records(rt.bus, [sample(i) for i in range(30)])
    await wait_for(lambda: len(set(stage.written)) == 30, timeout=15, what="every record, the failed batch's again")
    assert stage.most == 2
    await stage.stop()


class Confirming(BusStage):
    """Its output's receipt completes after ``handle`` returned, when the test says: the parse stage
    publishing to a broker (``Receipt.after``), whose confirm comes tens of milliseconds later."""

    name = "test.confirming"
    topics = {"samples": Sample}

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.confirms: list[asyncio.Future[Receipt]] = []
        self.handled: list[list[int]] = []

    async def handle(self, records) -> list[Receipt]:
        self.handled.append([int(r.counter_volume) for _, r in records])
        confirm: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self.confirms.append(confirm)
        return [Receipt.after(confirm)]


async def test_a_batch_is_acked_once_its_later_receipt_completes_and_the_next_goes_meanwhile(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    stage = Confirming(rt)
    await stage.start()
    first = await rt.bus.publish("samples", [OutMessage(sample(1).to_json())])
    await wait_for(lambda: len(stage.handled) == 1)
    second = await rt.bus.publish("samples", [OutMessage(sample(2).to_json())])
    await wait_for(lambda: len(stage.handled) == 2, what="the next batch, while the first awaits its confirm")
    await asyncio.sleep(0.1)
    assert not first.done and not second.done  # nothing acked before its output is durable
    stage.confirms[1].set_result(DURABLE)
    await asyncio.wait_for(second, 5)
    assert not first.done
    stage.confirms[0].set_result(DURABLE)
    await asyncio.wait_for(first, 5)
    assert stage.problem() is None
    await stage.stop()


async def test_a_batch_whose_later_receipt_fails_comes_again_and_is_reported(tmp_path: Path, monkeypatch) -> None:
    import telemetry.stage

    monkeypatch.setattr(telemetry.stage, "DEGRADED_AFTER", 0.3)
    rt = runtime(tmp_path)
    stage = Confirming(rt)
    await stage.start()
    stage.mark("running")
    done = await rt.bus.publish("samples", [OutMessage(sample(7).to_json())])
    await wait_for(lambda: len(stage.handled) == 1)
    stage.confirms[0].set_exception(BusError("the broker refused (nacked) part of the batch"))
    await wait_for(lambda: len(stage.handled) == 2, what="the batch given back and handled again")
    assert stage.handled == [[7], [7]] and not done.done
    await asyncio.sleep(0.4)
    assert "nacked" in (stage.problem() or "")  # the stage keeps failing: /healthz says degraded
    stage.confirms[1].set_result(DURABLE)
    await asyncio.wait_for(done, 5)
    await wait_for(lambda: stage.problem() is None, what="the problem to clear")
    await stage.stop()
