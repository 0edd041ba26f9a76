"""The README's quick start, line by line, against a real `telemetry run`: every example shows data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from support import wait_until

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- quick-start:"


def quickstart_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text[text.index(MARK):]
    body = block[block.index("```sh\n") + 6:]
    return [line for line in body[:body.index("```")].splitlines() if line.strip()]


def test_the_readme_quick_start_works_as_written(daemon_factory, tmp_path: Path) -> None:
    lines = quickstart_lines()
    assert lines[0] == ". .venv/bin/activate" and len(lines) >= 9
    d = daemon_factory("run", {"sources": {"host_metrics": {"interval": "1s"}, "ceilometer": {"enabled": False},
                                           "files": []}}).start()
    wait_until(lambda: any(m["name"] == "hardware.cpu.util" for m in httpx.get(d.url + "/v2/meters", timeout=5).json()),
               timeout=30, what="the first host figures")
    bin_dir = str(Path(sys.executable).parent)
    # TELEMETRY_URL as a CLI user sets it: the query commands follow it (and the daemon ignores it).
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "COLUMNS": "80", "TELEMETRY_URL": d.url}
    outputs: dict[str, str] = {}
    for line in lines[1:]:  # the activate line: PATH above does what it does
        command = line.replace("http://127.0.0.1:8777", d.url)
        r = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
        assert r.stdout.strip() or "sent" in r.stderr, f"no output from: {line}\n{r.stderr}"
        assert "Traceback" not in r.stderr
        outputs[line] = r.stdout + r.stderr

    def out(start: str, contains: str = "") -> str:
        return next(v for k, v in outputs.items() if k.startswith(start) and contains in k)

    assert "Claim successful" in out("telemetry search", "--request-id")
    assert "Instance failed to spawn" in out("telemetry search", "level:ERROR")
    assert "hardware.cpu.util" in out("telemetry meter-list")
    assert "Period" in out("telemetry statistics") and re.search(r"\d+\.\d", out("telemetry statistics"))
    assert "cpu-high" in out("telemetry alarm-list")
    assert "telemetry_events_stored_total" in out("curl", "/metrics")
    assert '"status":"ok"' in out("curl", "/healthz").replace(" ", "")
