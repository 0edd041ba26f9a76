"""The daemon's own logging: stderr, text or JSON lines, secrets never formatted in."""

from __future__ import annotations

import logging
import sys

import orjson

from telemetry.actions.security import redact_urls


class RedactingFormatter(logging.Formatter):
    """Every URL in a line (message and traceback) redacted.

    httpx logs each request's URL at INFO, and exceptions quote URLs too:
    Heat's pre-signed URLs (``Signature=``, ``AWSAccessKeyId``), hook paths
    and ``user:password@`` would land in the journal. Redacting the finished
    line catches what any library writes, not only our own calls.
    """

    def format(self, record: logging.LogRecord) -> str:
        return redact_urls(super().format(record))


class JsonFormatter(RedactingFormatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "@timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return redact_urls(orjson.dumps(body).decode())


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.formatter.converter = __import__("time").gmtime  # type: ignore[union-attr]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
