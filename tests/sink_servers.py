"""Small receivers implementing the documented Elasticsearch ``_bulk`` and Loki push contracts.

No Elasticsearch or Loki server can run here, so the sink tests talk over
real sockets to these. They keep what the documentation says a receiver
does: Elasticsearch answers NDJSON bulk requests item by item (``errors:
true`` with a status per item, 409 for a ``create`` of an id the index holds,
400 for a document that does not fit the mapping, field aliases not
writable, 429 when overloaded, ``X-Elastic-Product`` on every answer); Loki
takes snappy-compressed protobuf or JSON, wants label sets and entries in
time order per stream within a push, drops an entry equal to one it holds,
stores the valid entries of a push and answers 400 for the rest. Either can
be stopped and started again on the same port, keeping what it stored.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cramjam


class _Server:
    """A restartable threaded HTTP server; subclasses implement ``route``."""

    def __init__(self) -> None:
        self.port = 0
        self.httpd: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()
        self.requests = 0
        self.conns: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> _Server:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                outer.conns.add(self.connection)

            def finish(self) -> None:
                outer.conns.discard(self.connection)
                super().finish()

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.requests += 1
                    status, headers, payload = outer.route(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_HEAD = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
            for conn in list(self.conns):  # kept-alive connections go too, as when a process dies
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError


# -- Elasticsearch -------------------------------------------------------------------------------------------

ES_HEADERS = {
    "X-Elastic-Product": "Elasticsearch",
    "Content-Type": "application/vnd.elasticsearch+json;compatible-with=9",
}


def _es_error(status: int, kind: str, reason: str) -> tuple[int, dict[str, str], bytes]:
    body = {
        "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
        "status": status,
    }
    return status, ES_HEADERS, json.dumps(body).encode()


def _leaves(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in doc.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out.append((path, v))
            out.extend(_leaves(v, path + "."))
        else:
            out.append((path, v))
    return out


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        kinds = {_kind(v) for v in value}
        return kinds.pop() if len(kinds) == 1 else "keyword"
    return "keyword"


class ElasticsearchContract(_Server):
    """``_bulk``, ``_index_template``, ``_ilm/policy`` and ``/`` as Elasticsearch 8.x/9.x document them."""

    def __init__(self) -> None:
        super().__init__()
        self.indices: dict[str, dict[str, dict[str, Any]]] = {}
        self.mappings: dict[
            str, dict[str, str]
        ] = {}  # index -> field path -> kind ("alias:<path>" for aliases)
        self.templates: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        #: Overload knobs: whole bulk requests answered 429, then single documents answered 429.
        self.reject_requests = 0
        self.reject_items = 0
        self.bulk_requests = 0

    def docs(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {i: d for idx in self.indices.values() for i, d in idx.items()}

    def route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        path = path.split("?", 1)[0]
        if path == "/" and method in ("GET", "HEAD"):
            return (
                200,
                ES_HEADERS,
                json.dumps({"version": {"number": "9.0.0"}, "tagline": "You Know, for Search"}).encode(),
            )
        if method == "PUT" and path.startswith("/_index_template/"):
            self.templates[path.rsplit("/", 1)[1]] = json.loads(body)
            return 200, ES_HEADERS, b'{"acknowledged":true}'
        if method == "PUT" and path.startswith("/_ilm/policy/"):
            policy = json.loads(body)
            if "policy" not in policy or "phases" not in policy["policy"]:
                return _es_error(
                    400, "x_content_parse_exception", "[put_lifecycle_request] policy is required"
                )
            self.policies[path.rsplit("/", 1)[1]] = policy["policy"]
            return 200, ES_HEADERS, b'{"acknowledged":true}'
        if method in ("POST", "PUT") and path == "/_bulk":
            return self._bulk(headers, body)
        return _es_error(404, "no_handler_found_exception", f"no handler for {method} {path}")

    def _bulk(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.bulk_requests += 1
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        if "x-ndjson" not in ctype:
            return _es_error(406, "media_type_header_exception", f"Content-Type {ctype!r} is not NDJSON")
        if not body.endswith(b"\n"):
            return _es_error(
                400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"
            )
        if self.reject_requests > 0:
            self.reject_requests -= 1
            return _es_error(
                429, "es_rejected_execution_exception", "rejected execution of coordinating operation"
            )
        lines = body.decode().splitlines()
        items, errors = [], False
        i = 0
        while i < len(lines):
            action = json.loads(lines[i])
            ((op, meta),) = action.items()
            source = json.loads(lines[i + 1])
            i += 2
            item = self._item(op, meta["_index"], meta.get("_id"), source)
            errors |= "error" in item
            items.append({op: item})
        return 200, ES_HEADERS, json.dumps({"took": 1, "errors": errors, "items": items}).encode()

    def _item(self, op: str, index: str, doc_id: str | None, source: dict[str, Any]) -> dict[str, Any]:
        base = {"_index": index, "_id": doc_id}
        if op != "create" or not doc_id:
            return {
                **base,
                "status": 400,
                "error": {"type": "illegal_argument_exception", "reason": "expected create with _id"},
            }
        if self.reject_items > 0:
            self.reject_items -= 1
            return {
                **base,
                "status": 429,
                "error": {
                    "type": "es_rejected_execution_exception",
                    "reason": "rejected execution of write operation",
                },
            }
        if index not in self.indices:
            self._create_index(index)
        if doc_id in self.indices[index]:
            return {
                **base,
                "status": 409,
                "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": f"[{doc_id}]: version conflict, document already exists",
                },
            }
        problem = self._check_mapping(index, source)
        if problem:
            return {**base, "status": 400, "error": {"type": "document_parsing_exception", "reason": problem}}
        self.indices[index][doc_id] = source
        return {**base, "status": 201, "result": "created", "_version": 1}

    def _create_index(self, index: str) -> None:
        mapping: dict[str, str] = {}
        for tpl in self.templates.values():
            if any(re.fullmatch(p.replace("*", ".*"), index) for p in tpl["index_patterns"]):
                self._flatten_props(tpl["template"]["mappings"]["properties"], "", mapping)
        self.indices[index] = {}
        self.mappings[index] = mapping

    def _flatten_props(self, props: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
        for name, spec in props.items():
            path = prefix + name
            if "properties" in spec:
                out[path] = "object"
                self._flatten_props(spec["properties"], path + ".", out)
            elif spec.get("type") == "alias":
                out[path] = "alias:" + spec["path"]
            elif spec.get("type") == "flattened":
                out[path] = "flattened"
            else:
                out[path] = {
                    "keyword": "keyword",
                    "text": "keyword",
                    "date": "keyword",
                    "long": "number",
                }.get(spec.get("type", "keyword"), spec.get("type", "keyword"))

    def _check_mapping(self, index: str, source: dict[str, Any]) -> str | None:
        mapping = self.mappings[index]
        learned: dict[str, str] = {}
        for path, value in _leaves(source):
            if any(path.startswith(p + ".") and mapping.get(p) == "flattened" for p in mapping):
                continue
            known = mapping.get(path) or learned.get(path)
            kind = _kind(value)
            if known is None:
                learned[path] = kind
            elif known.startswith("alias:"):
                return f"Cannot write to a field alias [{path}]."
            elif known == "flattened":
                if kind != "object":
                    return f"[{path}] of type [flattened] expects an object"
            elif known != kind and not (known == "number" and kind == "keyword" and _numeric(value)):
                return f"failed to parse field [{path}] of type [{known}]: got a {kind}"
        mapping.update(learned)
        return None


def _numeric(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


# -- Loki ----------------------------------------------------------------------------------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def proto_fields(buf: bytes) -> list[tuple[int, Any]]:
    """A protobuf message's (field number, value) pairs, decoded from the wire format by hand."""
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, value))
    return out


def decode_push_proto(body: bytes) -> list[tuple[str, list[tuple[int, str]]]]:
    """logproto.PushRequest: streams=1 {labels=1, entries=2 {timestamp=1 {seconds=1, nanos=2}, line=2}}."""
    streams = []
    for num, stream in proto_fields(bytes(cramjam.snappy.decompress_raw(body))):
        assert num == 1
        labels, entries = "", []
        for snum, sval in proto_fields(stream):
            if snum == 1:
                labels = sval.decode()
            elif snum == 2:
                ts, line = 0, ""
                for enum, evalue in proto_fields(sval):
                    if enum == 1:
                        parts = dict(proto_fields(evalue))
                        ts = parts.get(1, 0) * 1_000_000_000 + parts.get(2, 0)
                    elif enum == 2:
                        line = evalue.decode()
                entries.append((ts, line))
        streams.append((labels, entries))
    return streams


_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_labels(text: str) -> tuple[tuple[str, str], ...]:
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"parse error: labels {text!r} are not {{...}}")
    inner, pairs, pos = text[1:-1], [], 0
    while pos < len(inner):
        m = _LABEL.match(inner, pos)
        if not m:
            raise ValueError(f"parse error at {inner[pos:]!r}")
        pairs.append((m.group(1), m.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")))
        pos = m.end()
    if not pairs:
        raise ValueError("error at least one label pair is required per stream")
    return tuple(sorted(pairs))


class LokiContract(_Server):
    """``POST /loki/api/v1/push`` as Loki documents it (unordered writes within ``max_behind``)."""

    def __init__(self, reject_older_than_ns: int = 0, max_behind_ns: int = 3600 * 10**9) -> None:
        super().__init__()
        #: stream labels -> {(ts, line)}; and its newest timestamp
        self.streams: dict[tuple[tuple[str, str], ...], dict[tuple[int, str], None]] = {}
        self.newest: dict[tuple[tuple[str, str], ...], int] = {}
        self.reject_older_than_ns = reject_older_than_ns
        self.max_behind_ns = max_behind_ns
        self.reject_requests = 0
        self.fail_requests = 0
        self.duplicates = 0
        self.unordered_pushes = 0

    def entries(self) -> list[tuple[dict[str, str], int, dict[str, Any]]]:
        with self.lock:
            return [
                (dict(labels), ts, json.loads(line)) for labels, es in self.streams.items() for ts, line in es
            ]

    def route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if method != "POST" or path.split("?", 1)[0] != "/loki/api/v1/push":
            return 404, {}, b"404 page not found\n"
        if self.fail_requests > 0:
            self.fail_requests -= 1
            return 503, {}, b"empty ring\n"
        if self.reject_requests > 0:
            self.reject_requests -= 1
            return 429, {}, b"Ingestion rate limit exceeded for user fake\n"
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        try:
            if ctype.startswith("application/x-protobuf"):
                pushed = decode_push_proto(body)
            elif ctype.startswith("application/json"):
                pushed = [
                    (json.dumps(s["stream"]), [(int(ts), line) for ts, line in s["values"]])
                    for s in json.loads(body)["streams"]
                ]
                pushed = [
                    ("{" + ", ".join(f'{k}="{v}"' for k, v in json.loads(lb).items()) + "}", es)
                    for lb, es in pushed
                ]
            else:
                return 415, {}, f"unsupported Content-Type {ctype!r}\n".encode()
            parsed = [(parse_labels(lb), es) for lb, es in pushed]
        except (ValueError, KeyError, AssertionError) as exc:
            return 400, {}, f"{exc}\n".encode()
        ignored, total, first_error = 0, 0, ""
        for labels, entries in parsed:
            if [ts for ts, _ in entries] != sorted(ts for ts, _ in entries):
                self.unordered_pushes += 1
            stored = self.streams.setdefault(labels, {})
            for ts, line in entries:
                total += 1
                newest = self.newest.get(labels, 0)
                if (ts, line) in stored:
                    self.duplicates += 1
                    continue
                error = ""
                if self.reject_older_than_ns and ts < self.reject_older_than_ns:
                    error = f"entry for stream '{_fmt(labels)}' has timestamp too old: {ts}"
                elif ts < newest - self.max_behind_ns:
                    error = f"entry with timestamp {ts} ignored, reason: 'entry too far behind'"
                if error:
                    ignored += 1
                    first_error = first_error or error
                    continue
                stored[(ts, line)] = None
                self.newest[labels] = max(newest, ts)
        if ignored:
            return 400, {}, f"{first_error}, total ignored: {ignored} out of {total}\n".encode()
        return 204, {}, b""


def _fmt(labels: tuple[tuple[str, str], ...]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}"
