"""The daemon's process settings: the collector's, and the C allocator's thresholds.

Each case runs in a fresh interpreter: the settings are the whole process's, and
this test process must keep its own.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent

# How many blocks of a process glibc serves from an mmap of their own, before and after a 4 MiB
# buffer (a batch's pipe message) is allocated: such a block is unmapped when freed, and the next
# batch's faults its pages in again.
_MMAPPED_BLOCKS = textwrap.dedent("""
    import ctypes, gc, sys
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Info
    if sys.argv[1] == "tuned":
        from telemetry.gctune import tune_for_daemon
        tune_for_daemon()
        assert gc.get_threshold()[0] >= 1_000_000
    before = libc.mallinfo2().hblks
    buf = bytearray(4 << 20)
    print(libc.mallinfo2().hblks - before)
""")

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")


def _mmapped(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _MMAPPED_BLOCKS, mode], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return int(out.stdout)


@glibc
def test_a_batch_sized_buffer_comes_from_the_heap_once_tuned() -> None:
    assert _mmapped("default") == 1  # glibc's own start: its own mmap, unmapped again when freed
    assert _mmapped("tuned") == 0


@glibc
def test_tune_malloc_reports_that_it_took() -> None:
    code = "from telemetry.gctune import tune_malloc; print(tune_malloc())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "True"
