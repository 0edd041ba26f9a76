"""The in-memory bus keeps broker semantics: ack, redelivery, groups, backpressure."""

from __future__ import annotations

import asyncio

import pytest

from telemetry.bus import BusError, MemoryBus, OutMessage
from telemetry.bus.records import decode_delivery, publish_records
from telemetry.models import Sample


def msgs(*values: str) -> list[OutMessage]:
    return [OutMessage(value=v.encode()) for v in values]


async def test_unacked_is_redelivered_after_close() -> None:
    bus = MemoryBus("t.")
    c1 = await bus.subscribe(["logs"], "server")
    await bus.publish("logs", msgs("a", "b", "c"))
    got = await c1.fetch(10, timeout=0.1)
    assert [d.value for d in got] == [b"a", b"b", b"c"]
    await c1.ack(got[:1])
    await c1.close()  # b and c were never acked
    c2 = await bus.subscribe(["logs"], "server")
    again = await c2.fetch(10, timeout=0.1)
    assert [d.value for d in again] == [b"b", b"c"]
    assert all(d.redelivered for d in again)
    await c2.ack(again)
    assert await c2.fetch(10, timeout=0.05) == []


async def test_nack_requeues_at_head_in_order() -> None:
    bus = MemoryBus()
    c = await bus.subscribe(["x"], "g")
    await bus.publish("x", msgs("1", "2", "3", "4"))
    first = await c.fetch(2, timeout=0.1)
    await c.nack(first)
    assert [d.value for d in await c.fetch(10, timeout=0.1)] == [b"1", b"2", b"3", b"4"]


async def test_nack_without_requeue_drops() -> None:
    bus = MemoryBus()
    c = await bus.subscribe(["x"], "g")
    await bus.publish("x", msgs("bad"))
    await c.nack(await c.fetch(1, timeout=0.1), requeue=False)
    assert await c.fetch(1, timeout=0.05) == []


async def test_groups_fan_out_and_members_share() -> None:
    bus = MemoryBus()
    store = await bus.subscribe(["s"], "store")
    rules = await bus.subscribe(["s"], "rules")
    store2 = await bus.subscribe(["s"], "store")
    await bus.publish("s", msgs(*[str(i) for i in range(10)]))
    a = await store.fetch(5, timeout=0.1)
    b = await store2.fetch(10, timeout=0.1)
    assert len(a) + len(b) == 10 and not {d.value for d in a} & {d.value for d in b}
    assert len(await rules.fetch(100, timeout=0.1)) == 10


async def test_messages_before_subscribe_are_kept() -> None:
    bus = MemoryBus()
    await bus.publish("early", msgs("x"))
    c = await bus.subscribe(["early"], "g")
    assert [d.value for d in await c.fetch(5, timeout=0.1)] == [b"x"]


async def test_fetch_waits_for_publish() -> None:
    bus = MemoryBus()
    c = await bus.subscribe(["w"], "g")

    async def later() -> None:
        await asyncio.sleep(0.05)
        await bus.publish("w", msgs("late"))

    task = asyncio.create_task(later())
    got = await c.fetch(5, timeout=2)
    await task
    assert [d.value for d in got] == [b"late"]


async def test_full_queue_applies_backpressure() -> None:
    bus = MemoryBus(max_queued=2)
    c = await bus.subscribe(["q"], "g")
    await bus.publish("q", msgs("1", "2"))
    blocked = asyncio.create_task(bus.publish("q", msgs("3")))
    await asyncio.sleep(0.05)
    assert not blocked.done()  # waits instead of dropping
    await c.ack(await c.fetch(1, timeout=0.1))
    await asyncio.wait_for(blocked, 1)
    assert [d.value for d in await c.fetch(10, timeout=0.1)] == [b"2", b"3"]


async def test_closed_bus_refuses() -> None:
    bus = MemoryBus()
    await bus.close()
    with pytest.raises(BusError):
        await bus.publish("x", msgs("a"))


async def test_records_round_trip_through_bus() -> None:
    bus = MemoryBus("telemetry.")
    c = await bus.subscribe(["samples"], "store")
    s = Sample(counter_name="cpu_util", counter_type="gauge", counter_volume=3.5, resource_id="vm1")
    assert await publish_records(bus, [s], "msgpack") == 1
    [d] = await c.fetch(1, timeout=0.1)
    assert d.key == b"vm1"
    assert decode_delivery(Sample, d) == s


async def test_unread_topic_never_blocks_publishers() -> None:
    """Dead letters nobody reads must not stall the stage that sets them aside."""
    bus = MemoryBus(max_queued=3)
    for i in range(10):
        await asyncio.wait_for(bus.publish("dead_letter", msgs(str(i))), 1)
    late = await bus.subscribe(["dead_letter"], "inspect")
    assert [d.value for d in await late.fetch(10, timeout=0.1)] == [b"7", b"8", b"9"]  # the newest kept


async def test_a_receipt_completes_once_every_writing_group_acked() -> None:
    """End-to-end acknowledgement: the all-in-one's publish is durable only when its consumers' writes are."""
    bus = MemoryBus()
    store = await bus.subscribe(["t"], "store", writes_durably=True)
    rules = await bus.subscribe(["t"], "rules", writes_durably=True)
    watcher = await bus.subscribe(["t"], "watch")  # an observer never holds a publisher back
    receipt = await bus.publish("t", msgs("a", "b"))
    assert not receipt.done
    a = await store.fetch(10, 0.1)
    await store.ack(a)
    assert not receipt.done  # the rules group has not written yet
    b = await rules.fetch(10, 0.1)
    await rules.nack(b)  # a failed write: back to the queue, still not durable
    assert not receipt.done
    b = await rules.fetch(10, 0.1)
    await rules.ack(b[:1])
    assert not receipt.done
    await rules.ack(b[1:])
    await asyncio.wait_for(receipt, 1)
    assert receipt.done and len(await watcher.fetch(10, 0.1)) == 2


async def test_a_dead_lettered_message_settles_its_receipt_and_a_closed_bus_abandons() -> None:
    bus = MemoryBus()
    stage = await bus.subscribe(["t"], "stage", writes_durably=True)
    settled = await bus.publish("t", msgs("poison"))
    await stage.nack(await stage.fetch(1, 0.1), requeue=False)  # dead-lettered: its fate is decided
    await asyncio.wait_for(settled, 1)
    pending = await bus.publish("t", msgs("x"))
    await bus.close()
    with pytest.raises(BusError, match="closed before"):
        await pending


async def test_a_topic_no_writer_reads_is_durable_at_once() -> None:
    """Nothing downstream to wait for (no stage subscribed yet): the receipt completes, as before."""
    bus = MemoryBus()
    receipt = await bus.publish("nobody", msgs("a"))
    assert receipt.done
    await receipt


async def test_groups_share_a_message_without_sharing_its_fate() -> None:
    """A message's one delivery sits in every group's queue: one group giving it back, or an observer
    acking it, changes nothing for another group or for the publisher's receipt."""
    bus = MemoryBus()
    store = await bus.subscribe(["t"], "store", writes_durably=True)
    rules = await bus.subscribe(["t"], "rules", writes_durably=True)
    watcher = await bus.subscribe(["t"], "watch")
    receipt = await bus.publish("t", msgs("a"))
    seen = await watcher.fetch(10, 0.1)
    await watcher.ack(seen)  # an observer's ack is no durable write
    assert not receipt.done
    [r] = await rules.fetch(10, 0.1)
    await rules.nack([r])  # given back: only the rules group reads it again
    [s] = await store.fetch(10, 0.1)
    assert not s.redelivered
    [again] = await rules.fetch(10, 0.1)
    assert again.redelivered and again.value == b"a"
    await store.ack([s])
    assert not receipt.done
    await rules.ack([again])
    await asyncio.wait_for(receipt, 1)


async def test_a_group_that_turns_durable_counts_only_for_later_messages() -> None:
    """Receipts count the writing groups there were when they were published: a group that starts
    writing durably later cannot complete an earlier receipt for the group that was counted."""
    bus = MemoryBus()
    store = await bus.subscribe(["t"], "store", writes_durably=True)
    late = await bus.subscribe(["t"], "late")
    before = await bus.publish("t", msgs("a"))
    late = await bus.subscribe(["t"], "late", writes_durably=True)
    await late.ack(await late.fetch(10, 0.1))
    assert not before.done  # the store has not written it yet
    after = await bus.publish("t", msgs("b"))
    await store.ack(await store.fetch(10, 0.1))
    await asyncio.wait_for(before, 1)
    assert not after.done  # counted for both groups now: the late one has not acked "b"
    await late.ack(await late.fetch(10, 0.1))
    await asyncio.wait_for(after, 1)


async def test_a_batch_published_packed_is_whole_only_when_all_of_it_came_in_order() -> None:
    """``packed_batches``: a consumer forwards the publisher's bytes only for a batch it holds whole; a batch
    split by a fetch or given back in part, and messages published without a pack, come as they are."""
    from telemetry.bus.memory import packed_batches

    bus = MemoryBus()
    c = await bus.subscribe(["x"], "g")
    a, b = [{"n": i} for i in range(3)], [{"n": i} for i in range(3, 5)]
    await bus.publish("x", [OutMessage(b"", None, {}, r) for r in a], packed=b"pack-a")
    await bus.publish("x", msgs("plain"))
    await bus.publish("x", [OutMessage(b"", None, {}, r) for r in b], packed=b"pack-b")
    got = await c.fetch(10, timeout=0.1)
    rest, whole = packed_batches(got)
    assert [(blob, [d.record for d in ds]) for blob, ds in whole] == [(b"pack-a", a), (b"pack-b", b)]
    assert [d.value for d in rest] == [b"plain"]
    await c.nack(got)
    first = await c.fetch(2, timeout=0.1)  # two of batch a's three
    rest, whole = packed_batches(first)
    assert whole == [] and [d.record for d in rest] == a[:2]
    await c.ack(first)
    more = await c.fetch(10, timeout=0.1)
    rest, whole = packed_batches(more)
    assert [blob for blob, _ in whole] == [b"pack-b"] and [d.record for d in rest[:1]] == a[2:]
    # The same deliveries out of their published order are not the pack's either.
    await c.nack(more)
    again = await c.fetch(10, timeout=0.1)
    swapped = [again[0], again[1], again[3], again[2]]
    rest, whole = packed_batches(swapped)
    assert whole == [] and rest == swapped


async def test_objects_published_as_they_are_keep_a_message_s_semantics() -> None:
    """``publish_objects``: each record is a delivery of its own (its key, no bytes until asked, no headers),
    fanned out to every group, durable once the writing groups acked, and whole for ``packed_batches``."""
    from telemetry.bus.memory import packed_batches

    bus = MemoryBus()
    store = await bus.subscribe(["x"], "store", writes_durably=True)
    watch = await bus.subscribe(["x"], "watch")
    records = [{"id": "a", "host": "h1"}, {"id": "b", "host": "h2"}]
    receipt = await bus.publish_objects("x", records, [b"h1", None], packed=b"pack")
    got = await store.fetch(10, timeout=0.1)
    assert [(d.record, d.key, d.headers, d.topic, d.redelivered) for d in got] == [
        (records[0], b"h1", {}, "x", False), (records[1], None, {}, "x", False)]
    assert got[0].value == b'{"id":"a","host":"h1"}'  # encoded only for whoever needs the bytes
    assert packed_batches(got) == ([], [(b"pack", got)])
    seen = await watch.fetch(10, timeout=0.1)
    assert [d.record for d in seen] == records
    await store.nack(got[1:])  # given back: not durable, and not the pack's any more
    await store.ack(got[:1])
    assert not receipt.done
    again = await store.fetch(10, timeout=0.1)
    assert [d.record for d in again] == records[1:] and again[0].redelivered
    assert packed_batches(again) == (again, [])
    await store.ack(again)
    await asyncio.wait_for(receipt, 1)
    assert (await bus.publish_objects("x", [], [])).done


async def test_a_consumer_of_two_topics_settles_each_batch_once() -> None:
    """Acks are counted per published batch, each against the queue of its own topic: a delivery acked
    twice, or acked after it was given back, settles nothing more; an observer's acks settle nothing."""
    bus = MemoryBus()
    both = await bus.subscribe(["a", "b"], "store", writes_durably=True)
    late = await bus.subscribe(["b"], "rules")  # an observer of b
    ra = await bus.publish("a", msgs("a1", "a2"))
    rb = await bus.publish_objects("b", [{"n": 1}, {"n": 2}], [None, None])
    got = await both.fetch(10, timeout=0.1)
    assert sorted(d.topic for d in got) == ["a", "a", "b", "b"]
    first_a = next(d for d in got if d.topic == "a")
    await both.ack([first_a])
    await both.ack([first_a])  # twice: still one of a's two
    assert not ra.done
    bs = [d for d in got if d.topic == "b"]
    await both.nack(bs[:1])  # given back: its ack below is not one
    await both.ack(bs)
    assert not rb.done
    await both.ack([d for d in got if d.topic == "a" and d is not first_a])
    await asyncio.wait_for(ra, 1)
    await late.ack(await late.fetch(10, timeout=0.1))
    assert not rb.done  # an observer's acks count for nothing
    again = await both.fetch(10, timeout=0.1)
    assert [(d.topic, d.record) for d in again] == [("b", {"n": 1})] and again[0].redelivered
    await both.ack(again)
    await asyncio.wait_for(rb, 1)


async def test_a_bus_without_its_own_publish_objects_publishes_a_message_each() -> None:
    """``Bus.publish_objects`` by default: a message holding each record and its key, through ``publish``
    (so a bus that wraps ``publish`` sees these too)."""
    from telemetry.bus import Bus, Receipt

    class Recording(Bus):
        in_process = True

        def __init__(self) -> None:
            super().__init__()
            self.sent: list[tuple[str, list[OutMessage]]] = []

        async def publish(self, topic: str, messages):  # type: ignore[no-untyped-def]
            self.sent.append((topic, list(messages)))
            return Receipt()

        async def subscribe(self, topics, group, writes_durably=False):  # type: ignore[no-untyped-def]
            raise NotImplementedError("this test double only publishes")

    bus = Recording()
    records = [{"id": "a"}, {"id": "b"}]
    assert (await bus.publish_objects("events", records, [b"h1", None])).done
    [(topic, sent)] = bus.sent
    assert topic == "events"
    assert [(m.value, m.key, m.headers, m.record) for m in sent] == [(b"", b"h1", {}, records[0]),
                                                                      (b"", None, {}, records[1])]
