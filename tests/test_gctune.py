"""The daemon's process settings: the collector's, and the C allocator's thresholds.

Each case runs in a fresh interpreter: the settings are the whole process's, and
this test process must keep its own. The project runs on glibc (Debian), whose
allocator the thresholds are for.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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


def _python(code: str, *args: str) -> str:
    """What ``code`` prints in a fresh interpreter of this project."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          check=True).stdout.strip()


def test_a_batch_sized_buffer_comes_from_the_heap_once_tuned() -> None:
    assert _python(_MMAPPED_BLOCKS, "default") == "1"  # glibc's own start: its own mmap, unmapped again when freed
    assert _python(_MMAPPED_BLOCKS, "tuned") == "0"


def test_tune_malloc_reports_that_it_took() -> None:
    assert _python("from telemetry.gctune import tune_malloc; print(tune_malloc())") == "True"
