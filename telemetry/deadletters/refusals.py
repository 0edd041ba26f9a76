"""What an input refuses at the door still reaches the dead letters, so an operator can see it.

A datagram or a request an input refuses (malformed, too complex, badly
signed) never gets onto the bus, so no stage dead-letters it; without this
an operator would find only a count. The refused bytes go to the dead-letter
topic with the reason, under the topic ``refused:<input>``, which nothing
reads again (a refused sample is never replayed past its signature check).
The queue is bounded: a flood of garbage costs counted drops, never memory.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from telemetry.bus import Bus, OutMessage
from telemetry.bus.topics import DEAD_LETTER
from telemetry.metrics import REGISTRY

log = logging.getLogger(__name__)

#: Bytes of a refused message kept (as the stages keep of theirs).
KEEP_BYTES = 1 << 20
#: Refusals waiting to be published; past this they are counted and dropped.
QUEUE = 1000
REFUSED_TOPIC_PREFIX = "refused:"

NOT_KEPT = Counter("telemetry_refusals_not_kept", "Refused messages not kept as dead letters (the queue was full)",
                   ["input"], registry=REGISTRY)


class Refusals:
    """One input's refused messages, published to the dead letters in the background."""

    def __init__(self, bus: Bus, stage: str) -> None:
        self.bus = bus
        self.stage = stage
        self.topic = REFUSED_TOPIC_PREFIX + stage
        self._queue: asyncio.Queue[OutMessage] = asyncio.Queue(QUEUE)

    def _message(self, reason: str, error: str, raw: bytes) -> OutMessage:
        return OutMessage(value=bytes(raw[:KEEP_BYTES]),
                          headers={"reason": reason, "topic": self.topic, "stage": self.stage, "error": error[:500]})

    def refuse(self, reason: str, error: str, raw: bytes) -> None:
        """Keep ``raw`` as a dead letter, in the background (``run``); for inputs with no one to await it."""
        try:
            self._queue.put_nowait(self._message(reason, error, raw))
        except asyncio.QueueFull:
            NOT_KEPT.labels(input=self.stage).inc()

    async def keep(self, refused: list[tuple[str, str, bytes]]) -> None:
        """Keep (reason, error, bytes) as dead letters now; for an input answering a request."""
        if refused:
            await self.bus.publish(DEAD_LETTER, [self._message(*r) for r in refused])

    async def run(self) -> None:
        """Publish what was refused, a batch at a time; retried while the bus is away."""
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 100:
                batch.append(self._queue.get_nowait())
            while True:
                try:
                    await self.bus.publish(DEAD_LETTER, batch)
                    break
                except Exception as exc:  # the bus is away: keep them, try again
                    log.debug("%s: refusals not kept yet (%s)", self.stage, exc)
                    await asyncio.sleep(1.0)
