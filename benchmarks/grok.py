"""Grok throughput: our engine against pygrok, and a hand-written ``re`` floor, on the same lines.

    .venv/bin/python benchmarks/grok.py [--lines 200000] [--seed 7] [--rounds 3]

Generates oslo.log lines in the shapes nova, neutron and cinder write
(request context or ``[-]``, optional ``[instance: ...]``), parses them all
with the same grok expression (``%{OPENSTACK_OSLO}`` from parsers/) through
our compiler and through pygrok, checks both give the same captures, and
prints lines per second and the ratio. The ``re`` baseline is a regex written
by hand for the same fields: about the best pure Python can do.
Needs the ``bench`` extra (pygrok).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
import uuid
from collections.abc import Callable

from pygrok import Grok as PyGrok

from telemetry.parse.budget import armed
from telemetry.parse.grok import Grok
from telemetry.parse.parser import DEFAULT_TIMEOUT
from telemetry.parse.patterns import load_pattern_dirs

EXPRESSION = "%{OPENSTACK_OSLO}"
LOGGERS = ["nova.compute.manager", "nova.virt.libvirt.driver", "neutron.wsgi", "cinder.volume.manager",
           "oslo_concurrency.lockutils", "glance.api.v2.images", "keystone.common.wsgi"]
LEVELS = ["DEBUG", "INFO", "INFO", "INFO", "WARNING", "ERROR"]
MESSAGES = ["Claim successful on node cn01.example.org", "Took 14.21 seconds to build instance.",
            'Lock "compute_resources" acquired by "nova.compute.resource_tracker" :: waited 0.000s',
            '10.0.0.11 "GET /v2.0/ports?device_id=3f6c2b1e HTTP/1.1" status: 200  len: 1093 time: 0.0851240',
            "Final resource view: name=cn01 phys_ram=257754MB used_ram=18944MB total_vcpus=64 used_vcpus=9"]

#: The oslo line written by hand with Python's re: the floor of what Python can do.
HAND = re.compile(
    r"(?P<timestamp>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?) (?P<pid>\d+) (?P<loglevel>[A-Z]+) "
    r"(?P<logger>[^\s\[]+) (?:\[(?:-|(?:req-[0-9a-f-]{36} )?(?P<request_id>req-[0-9a-f-]{36})"
    r"(?: (?:-|(?P<user_id>[^\s\]]+)))?(?: (?:-|(?P<project_id>[^\s\]]+)))?(?: (?:-|(?P<domain_id>[^\s\]]+)))?"
    r"(?: (?:-|(?P<user_domain_id>[^\s\]]+)))?(?: (?:-|(?P<project_domain_id>[^\s\]]+)))?)\] ?)?"
    r"(?:\[instance: (?P<instance_id>[0-9a-f-]{36})\] ?)?(?P<message>(?s:.*))"
)


def generate(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    ids = [str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(64)]
    hexes = [uuid.UUID(int=rnd.getrandbits(128)).hex for _ in range(16)]
    lines = []
    for i in range(n):
        ts = f"2026-03-02 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}"
        kind = rnd.random()
        if kind < 0.2:
            ctx = "[-] "
        elif kind < 0.4:
            ctx = f"[req-{rnd.choice(ids)} - - - - -] "
        else:
            ctx = f"[req-{rnd.choice(ids)} {rnd.choice(hexes)} {rnd.choice(hexes)} - default default] "
        inst = f"[instance: {rnd.choice(ids)}] " if rnd.random() < 0.4 else ""
        lines.append(f"{ts} {rnd.randint(1000, 40000)} {rnd.choice(LEVELS)} {rnd.choice(LOGGERS)} "
                     f"{ctx}{inst}{rnd.choice(MESSAGES)}")
    return lines


def run(name: str, fn: Callable[[str], object], lines: list[str]) -> float:
    start = time.perf_counter()
    matched = sum(1 for line in lines if fn(line) is not None)
    elapsed = time.perf_counter() - start
    if matched != len(lines):
        sys.exit(f"{name}: only {matched} of {len(lines)} lines matched")
    rate = len(lines) / elapsed
    print(f"{name:<34} {rate:>12,.0f} lines/s  ({elapsed:.2f} s)")
    return rate


#: The peer as a whole program: read the file, grok each line, write one JSON object a line.
PYGROK_PROGRAM = """
import json, sys
from pygrok import Grok
from telemetry.parse.patterns import load_pattern_dirs
grok = Grok(sys.argv[2], custom_patterns=load_pattern_dirs([]))
out = sys.stdout
with open(sys.argv[1]) as f:
    for line in f:
        caps = grok.match(line.rstrip("\\n"))
        if caps is not None:
            out.write(json.dumps({k: v for k, v in caps.items() if v is not None}) + "\\n")
"""

#: The floor as a whole program: the hand-written ``re`` and orjson, no event built at all.
FLOOR_PROGRAM = """
import sys, orjson
sys.path.insert(0, sys.argv[2])
from grok import HAND
out, dumps = sys.stdout.buffer, orjson.dumps
with open(sys.argv[1]) as f:
    for line in f:
        m = HAND.match(line.rstrip("\\n"))
        if m is not None:
            out.write(dumps({k: v for k, v in m.groupdict().items() if v is not None}) + b"\\n")
"""


def _count_lines(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` and count the lines it writes, reading as a pipe's consumer does (``| wc -l``).

    The output is counted as it comes, never held: ``subprocess.run`` kept all of it (100 MB
    here), and the harness faulting in that memory slowed its reads enough that the faster
    writer waited on a full pipe, which the wall time then charged to it.
    """
    import subprocess

    count = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, bufsize=0) as proc:
        assert proc.stdout is not None
        read = proc.stdout.read
        while chunk := read(1 << 20):
            count += chunk.count(b"\n")
    if proc.returncode:
        sys.exit(f"{cmd[2]}: exit status {proc.returncode}")
    return count


def whole_process(lines: list[str], rounds: int = 3) -> None:
    """``telemetry parse`` as an operator runs it against pygrok in a program of its own, same file.

    Each starts a Python interpreter, reads the file and writes a JSON object per line to a pipe;
    ours also builds the Event (timestamp, level, ids, the fields) that pygrok leaves as captures.
    CPU is the child's user + system time; each program runs ``rounds`` times, interleaved, and
    the median of each is printed.

    The children run as an installed program does. Without ``PYTHONUNBUFFERED``: a program's
    stdout to a pipe is block-buffered by default, and with the variable set (as some shells and
    CI runners do) pygrok's program made a system call per line, which had this benchmark print
    1.4x where the programs were even. Without ``PYTHONDONTWRITEBYTECODE``, after one warm-up run
    each on a few lines: a wheel's modules are compiled when it is installed, and with the variable
    set in a fresh checkout every run compiled every module it imported again (60 ms of ours).
    """
    import os
    import resource
    import statistics
    import tempfile

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE")}
    files = []
    for part in (lines[:1000], lines):
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as fh:
            fh.write("\n".join(part) + "\n")
        files.append(fh.name)
    here = os.path.dirname(os.path.abspath(__file__))

    def commands(path: str) -> dict[str, list[str]]:
        return {"pygrok program": [sys.executable, "-c", PYGROK_PROGRAM, path, EXPRESSION],
                "telemetry parse -t openstack": [sys.executable, "-m", "telemetry", "parse", "-t", "openstack", path],
                "hand-written re + orjson program": [sys.executable, "-c", FLOOR_PROGRAM, path, here]}

    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    try:
        for cmd in commands(files[0]).values():  # warm-up: bytecode written, files in the page cache
            _count_lines(cmd, env)
        for _ in range(rounds):
            for name, cmd in commands(files[1]).items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                written = _count_lines(cmd, env)
                wall = time.perf_counter() - t0
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if written != len(lines):
                    sys.exit(f"{name}: {written} objects for {len(lines)} lines")
                walls.setdefault(name, []).append(wall)
                cpus.setdefault(name, []).append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    finally:
        for path in files:
            os.unlink(path)
    wall_of = {name: statistics.median(w) for name, w in walls.items()}
    cpu_of = {name: statistics.median(c) for name, c in cpus.items()}
    for name, wall in wall_of.items():
        print(f"{name:<34} {len(lines) / wall:>12,.0f} lines/s  ({wall:.2f} s, "
              f"{cpu_of[name] / len(lines) * 1e6:.1f} CPU s per M lines; median of {rounds})")
    ours, theirs, floor = "telemetry parse -t openstack", "pygrok program", "hand-written re + orjson program"
    print(f"whole process: telemetry parse / pygrok = {wall_of[theirs] / wall_of[ours]:.2f}x by wall time, "
          f"{cpu_of[theirs] / cpu_of[ours]:.2f}x by CPU time (the re + orjson floor: {cpu_of[theirs] / cpu_of[floor]:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each whole program (the median is printed)")
    args = ap.parse_args()
    patterns = load_pattern_dirs([])
    lines = generate(args.lines, args.seed)
    ours = Grok(EXPRESSION, patterns)
    theirs = PyGrok(EXPRESSION, custom_patterns=patterns)

    def pygrok_match(line: str) -> dict | None:
        caps = theirs.match(line)
        return None if caps is None else {k: v for k, v in caps.items() if v is not None}

    def hand_match(line: str) -> dict | None:
        m = HAND.match(line)
        return None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}

    for line in lines[:2000]:  # same patterns, same answers
        assert ours.match(line) == pygrok_match(line) == hand_match(line), line
    print(f"{len(lines):,} generated oslo.log lines, expression {EXPRESSION}")
    r_pygrok = run("pygrok", theirs.match, lines)
    with armed():  # as the stage and `telemetry parse` run it: re, cut by a SIGALRM budget
        r_ours = run(f"ours (timeout {DEFAULT_TIMEOUT}s per match)", lambda s: ours.match(s, DEFAULT_TIMEOUT), lines)
    r_slow = run("ours, regex engine (worker thread)", lambda s: ours.match(s, DEFAULT_TIMEOUT), lines)
    r_hand = run("hand-written re (no budget)", hand_match, lines)
    print(f"ours / pygrok = {r_ours / r_pygrok:.2f}x   ours / hand-written re = {r_ours / r_hand:.2f}x"
          f"   regex-engine fallback / pygrok = {r_slow / r_pygrok:.2f}x")
    whole_process(lines, args.rounds)


if __name__ == "__main__":
    main()
