"""Datagrams the kernel drops are counted and reported, not lost in silence (issue 14)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import msgpack

from telemetry.bus import MemoryBus
from telemetry.collect.ceilometer import CeilometerUdpSource
from telemetry.config import validate
from telemetry.netstats import KERNEL_DROPS, DropWatch, udp_drops
from telemetry.runtime import Runtime
from tests.support import wait_for


def burst(port: int, n: int, size: int = 1200) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        payload = msgpack.dumps({"counter_name": "x", "pad": "p" * size})
        for _ in range(n):
            s.sendto(payload, ("127.0.0.1", port))


def test_the_kernels_drop_count_of_a_socket_is_read() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
        sock.bind(("127.0.0.1", 0))
        watch = DropWatch("test.sock", sock)
        assert udp_drops(sock) == 0
        burst(sock.getsockname()[1], 200)
        assert watch.poll(time.monotonic()) > 0 and watch.total == udp_drops(sock)


async def test_a_udp_listener_reports_kernel_drops_on_healthz(tmp_path: Path) -> None:
    settings = validate({"data_dir": str(tmp_path), "sources": {"ceilometer": {"udp": "127.0.0.1:0"}}})
    rt = Runtime(settings=settings, mode="server", bus=MemoryBus(), data_dir=tmp_path)
    source = CeilometerUdpSource(rt)
    await source.start()
    source.mark("running")
    before = KERNEL_DROPS.labels(listener=source.name)._value.get()
    try:
        assert source.transport is not None
        source.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        sender = threading.Thread(target=burst, args=(source.port, 300))
        sender.start()
        sender.join()  # the event loop did not read meanwhile: the burst overflowed the buffer
        await wait_for(lambda: source.problem(), 5, "the listener to report its drops")
        assert "dropped by the kernel" in source.health()["problem"]
        assert KERNEL_DROPS.labels(listener=source.name)._value.get() > before
        assert source.details()["kernel_drops"] > 0
    finally:
        await source.stop()
