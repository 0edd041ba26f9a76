"""logstash-patterns-core files, loaded unchanged with --patterns-dir, capture as Logstash documents.

The pattern files are the copy of logstash-patterns-core that the ``pygrok``
package ships (installed through pip, see the ``test`` extra); the sample
lines and expected captures are those of logstash-patterns-core's own specs
(``spec/patterns/*_spec.rb``, legacy mode) and of the grok filter's
documentation.
"""

from __future__ import annotations

from pathlib import Path

import pygrok
import pytest

from telemetry.parse import Parser
from telemetry.parse.grok import Grok, GrokError
from telemetry.parse.patterns import load_pattern_dirs

PATTERNS_DIR = Path(pygrok.__file__).parent / "patterns"


@pytest.fixture(scope="module")
def patterns() -> dict[str, str]:
    return load_pattern_dirs([PATTERNS_DIR], builtin=False)


def grok(patterns: dict[str, str], expression: str, line: str) -> dict:
    caps = Grok(expression, patterns).match(line)
    assert caps is not None, f"{expression} did not match {line!r}"
    return caps


def test_every_pattern_compiles(patterns: dict[str, str]) -> None:
    failed = {}
    for name in patterns:
        try:
            Grok("%{" + name + "}", patterns)
        except GrokError as exc:
            failed[name] = str(exc)
    # SHOREWALL stacks quantifiers (".?*"), which Oniguruma allows and Python's engines refuse.
    assert set(failed) <= {"SHOREWALL"}, failed
    assert len(patterns) > 250


def test_haproxyhttp_spec(patterns: dict[str, str]) -> None:
    line = ('Dec  9 13:01:26 localhost haproxy[28029]: 127.0.0.1:39759 [09/Dec/2013:12:59:46.633] loadbalancer '
            'default/instance8 0/51536/1/48082/99627 200 83285 - - ---- 87/87/87/1/0 0/67 {77.24.148.74} '
            '"GET /path/to/image HTTP/1.1"')
    caps = grok(patterns, "%{HAPROXYHTTP}", line)
    want = {"syslog_timestamp": "Dec  9 13:01:26", "syslog_server": "localhost", "http_request": "/path/to/image",
            "http_status_code": "200", "http_verb": "GET", "http_version": "1.1", "program": "haproxy",
            "client_ip": "127.0.0.1", "server_name": "instance8"}
    assert {k: caps.get(k) for k in want} == want


def test_haproxyhttp_badreq_spec(patterns: dict[str, str]) -> None:
    line = ('Jul 18 17:05:30 localhost haproxy[8247]: 188.223.50.7:51940 [18/Jul/2011:17:05:24.339] http_proxy_ads '
            'http_proxy_ads/<NOSRV> -1/-1/-1/-1/6001 408 212 - - cR-- 100/89/0/0/0 0/0 "<BADREQ>"')
    caps = grok(patterns, "%{HAPROXYHTTP}", line)
    want = {"backend_name": "http_proxy_ads", "frontend_name": "http_proxy_ads", "server_name": "<NOSRV>",
            "http_status_code": "408", "time_backend_connect": "-1", "time_queue": "-1",
            "time_backend_response": "-1", "captured_request_cookie": "-", "captured_response_cookie": "-",
            "bytes_read": "212", "termination_state": "cR--"}
    assert {k: caps.get(k) for k in want} == want


def test_combinedapachelog_documented_example(patterns: dict[str, str]) -> None:
    line = ('127.0.0.1 - - [11/Dec/2013:00:01:45 -0800] "GET /xampp/status.php HTTP/1.1" 200 3891 '
            '"http://cadenza/xampp/navi.php" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.9; rv:25.0) '
            'Gecko/20100101 Firefox/25.0"')
    assert grok(patterns, "%{COMBINEDAPACHELOG}", line) == {
        "clientip": "127.0.0.1", "ident": "-", "auth": "-", "timestamp": "11/Dec/2013:00:01:45 -0800",
        "verb": "GET", "request": "/xampp/status.php", "httpversion": "1.1", "response": "200", "bytes": "3891",
        "referrer": '"http://cadenza/xampp/navi.php"',
        "agent": '"Mozilla/5.0 (Macintosh; Intel Mac OS X 10.9; rv:25.0) Gecko/20100101 Firefox/25.0"',
    }


def test_grok_filter_documented_example(patterns: dict[str, str]) -> None:
    expr = "%{IP:client} %{WORD:method} %{URIPATHPARAM:request} %{NUMBER:bytes} %{NUMBER:duration}"
    assert grok(patterns, expr, "55.3.244.1 GET /index.html 15824 0.043") == {
        "client": "55.3.244.1", "method": "GET", "request": "/index.html", "bytes": "15824", "duration": "0.043"}
    typed = expr.replace("bytes}", "bytes:int}").replace("duration}", "duration:float}")
    assert grok(patterns, typed, "55.3.244.1 GET /index.html 15824 0.043")["bytes"] == 15824


def test_sysloglines_spec(patterns: dict[str, str]) -> None:
    line = "Mar 16 00:01:25 evita postfix/smtpd[1713]: connect from camomile.cloud9.net[168.100.1.3]"
    caps = grok(patterns, "%{SYSLOGLINE}", line)
    assert caps == {"timestamp": "Mar 16 00:01:25", "logsource": "evita", "program": "postfix/smtpd", "pid": "1713",
                    "message": "connect from camomile.cloud9.net[168.100.1.3]"}


def test_syslog5424_spec(patterns: dict[str, str]) -> None:
    line = '<191>1 2009-06-30T18:30:00+02:00 paxton.local grokdebug 4123 - [id1 foo="bar"][id2 baz="something"] Hello, syslog.'
    caps = grok(patterns, "%{SYSLOG5424LINE}", line)
    assert caps == {"syslog5424_pri": "191", "syslog5424_ver": "1", "syslog5424_ts": "2009-06-30T18:30:00+02:00",
                    "syslog5424_host": "paxton.local", "syslog5424_app": "grokdebug", "syslog5424_proc": "4123",
                    "syslog5424_sd": '[id1 foo="bar"][id2 baz="something"]', "syslog5424_msg": "Hello, syslog."}


def test_patterns_dir_through_parser_keeps_user_captures() -> None:
    parser = Parser(patterns_dirs=[PATTERNS_DIR], patterns=["%{SYSLOGLINE}"])
    ev = parser.parse("Mar 16 00:01:25 evita postfix/smtpd[1713]: connect from camomile.cloud9.net[168.100.1.3]")
    d = ev.to_dict()
    assert d["program"] == "postfix/smtpd" and d["logsource"] == "evita" and d["timestamp"] == "Mar 16 00:01:25"
    assert d["pid"] == 1713 and d["level"] is None and d["tags"] == []
    assert d["message"] == "connect from camomile.cloud9.net[168.100.1.3]"
