"""Datagrams the kernel dropped before a UDP listener could read them.

When a burst outruns a listener, the kernel drops what no longer fits in the
socket's receive buffer and tells nobody but ``/proc/net/udp{,6}``, which
keeps a drop count per socket (found by the socket's inode). Listeners poll
it, so such losses show in ``telemetry_listener_kernel_drops_total`` and on
/healthz instead of vanishing.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from prometheus_client import Counter

from telemetry.metrics import REGISTRY

KERNEL_DROPS = Counter("telemetry_listener_kernel_drops",
                       "Datagrams the kernel dropped because a listener's receive buffer was full",
                       ["listener"], registry=REGISTRY)

_TABLES = (Path("/proc/net/udp"), Path("/proc/net/udp6"))


def udp_drops(sock: socket.socket) -> int | None:
    """The kernel's drop count for ``sock``; None where the system does not tell (not Linux)."""
    inode = str(os.fstat(sock.fileno()).st_ino)
    for table in _TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) >= 13 and cols[9] == inode:
                return int(cols[-1])
    return None


class DropWatch:
    """Counts a listener's new kernel drops each time ``poll`` runs; remembers when the last ones happened."""

    def __init__(self, listener: str, sock: socket.socket) -> None:
        self.listener = listener
        self.sock = sock
        self.total = 0
        self.last_drop_at: float | None = None
        self._seen = udp_drops(sock) or 0

    def poll(self, now: float) -> int:
        found = udp_drops(self.sock)
        if found is None or found <= self._seen:
            return 0
        new, self._seen = found - self._seen, found
        self.total += new
        self.last_drop_at = now
        KERNEL_DROPS.labels(listener=self.listener).inc(new)
        return new
