"""A minimal OTLP/HTTP trace receiver for tests: ``POST /v1/traces`` with JSON encoding.

Each body is parsed into ``ExportTraceServiceRequest`` with ``google.protobuf.json_format``
(unknown fields are an error), after turning the hex trace and span ids into the base64 that
protobuf's generic JSON mapping expects (OTLP's JSON uses hex: the one deviation from proto3
JSON). Ids must then be 16 and 8 bytes. A body that fails any of this is answered 400 and kept
in ``invalid``; a valid one is answered 200 ``{}`` and its spans kept in ``spans``.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

HEX_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids_to_base64(node):
    if isinstance(node, dict):
        return {k: (base64.b64encode(bytes.fromhex(v)).decode() if k in HEX_ID_FIELDS and isinstance(v, str)
                    else _hex_ids_to_base64(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def _value(any_value) -> object:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def parse_export(body: bytes) -> list[dict]:
    """The spans of one OTLP/HTTP JSON body, flattened; raises ValueError when it is not valid OTLP."""
    if not body:
        raise ValueError("empty body")
    document = json.loads(body)
    for key in ("traceId", "spanId", "parentSpanId"):
        for text in _find(document, key):
            if not isinstance(text, str) or len(text) not in (16, 32) or text != text.lower():
                raise ValueError(f"{key} {text!r} is not lower-case hex")
            bytes.fromhex(text)
    message = ExportTraceServiceRequest()
    json_format.Parse(json.dumps(_hex_ids_to_base64(document)), message)
    spans = []
    for resource_spans in message.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8 or len(span.parent_span_id) not in (0, 8):
                    raise ValueError(f"bad id lengths in span {span.name}")
                spans.append({
                    "resource": resource,
                    "scope": scope_spans.scope.name,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex() or None,
                    "name": span.name,
                    "kind": span.kind,
                    "start": span.start_time_unix_nano,
                    "end": span.end_time_unix_nano,
                    "attributes": {a.key: _value(a.value) for a in span.attributes},
                    "status": span.status.code,
                })
    return spans


def _find(node, key):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            else:
                yield from _find(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _find(v, key)


class OTLPReceiver:
    """Listens on 127.0.0.1:``port`` (0: any) until ``stop()``; ``start()`` again on the same port."""

    def __init__(self, port: int = 0):
        self.port = port
        self.lock = threading.Lock()
        self.spans: list[dict] = []
        self.invalid: list[str] = []
        self.requests = 0
        self.content_types: set[str] = set()
        self._failures_left = 0
        self._failure_status = 503
        self._server: ThreadingHTTPServer | None = None
        self._connections: set = set()

    def start(self) -> "OTLPReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with receiver.lock:
                    receiver._connections.add(self.connection)

            def finish(self):
                with receiver.lock:
                    receiver._connections.discard(self.connection)
                super().finish()

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests += 1
                    receiver.content_types.add(self.headers.get("Content-Type", ""))
                status, answer = 200, b"{}"
                with receiver.lock:
                    failing = receiver._failures_left > 0
                    if failing:
                        receiver._failures_left -= 1
                if failing:
                    status, answer = receiver._failure_status, b'{"error":"failing on purpose"}'
                elif self.path != "/v1/traces":
                    status, answer = 404, b"{}"
                else:
                    try:
                        spans = parse_export(body)
                        with receiver.lock:
                            receiver.spans.extend(spans)
                    except Exception as error:  # noqa: BLE001 - any failure is an invalid export
                        with receiver.lock:
                            receiver.invalid.append(f"{type(error).__name__}: {error}")
                        status, answer = 400, json.dumps({"error": str(error)}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stops listening and cuts every open (keep-alive) connection: the collector is gone."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answers the next `count` exports with `status` (their spans are not kept)."""
        with self.lock:
            self._failures_left, self._failure_status = count, status

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spans_of(self, trace_id: str) -> list[dict]:
        with self.lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]
