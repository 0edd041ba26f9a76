"""schemathesis against our own OpenAPI document, through a running daemon: no input may get a 5xx (issue 20).

Every operation the document lists is called with generated parameters and
bodies, valid and not; the only check is that the daemon never answers with
a server error (a 503 saying a part of the daemon is not running would be
one too, and none is expected from an all-in-one). Bounded in time: a fixed
number of examples per operation, no deadline per example on a loaded machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from hypothesis import HealthCheck, Phase, given, settings

from tests.conftest import DaemonProcess

TOKEN = "fuzz-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 40


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path_factory.mktemp("fuzz"), "run", {
        "api": {"tokens": [TOKEN]},
        "sources": {"files": [], "ceilometer": {"enabled": False},
                    "zabbix": {"trapper": "127.0.0.1:0", "passive": "127.0.0.1:0"}},
        "actions": {"max_attempts": 1, "timeout": "1s"}})
    d.start()
    try:
        yield d
    finally:
        d.kill()


def test_no_input_gets_a_server_error(fuzzed: DaemonProcess) -> None:
    # Driven here rather than through schemathesis' pytest plugin, which does not load under this pytest.
    schema = schemathesis.openapi.from_url(fuzzed.url + "/openapi.json", headers=AUTH)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        # Valid requests and, as often, ones that break the schema (wrong types, missing fields).
        @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                              operation.as_strategy(GenerationMode.NEGATIVE)))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  phases=[Phase.explicit, Phase.generate])
        def call(case: schemathesis.Case) -> None:
            response = case.call(headers=AUTH, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} query={case.query} "
                                f"body={str(case.body)[:200]!r} -> {response.status_code} {response.text[:200]}")

        call()
    assert operations >= 30, f"only {operations} operations in the document"
    assert not failures, "\n".join(sorted(set(failures))[:20]) + "\n" + fuzzed.output()[-3000:]
