"""The urllib transport against a real HTTP server on 127.0.0.1 (stdlib http.server; no outside network)."""

from __future__ import annotations

import gzip
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from argus_sdk import ArgusError, Client
from argus_sdk.transport import TransportError, UrllibTransport


class Handler(BaseHTTPRequestHandler):
    received: list = []

    def log_message(self, *args):
        pass

    def _answer(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/limits":
            self._answer(503, {"error": {"code": "SERVICE_UNAVAILABLE", "message": "down", "details": {"retryable": True}}},
                         {"Retry-After": "3"})
        else:
            self._answer(404, {"error": {"code": "ROUTE_NOT_FOUND", "message": "no", "details": {}}})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
        payload = json.loads(body)
        Handler.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, payload))
        if self.path.startswith("/batch/events"):
            results = [{"index": i, "status": 201, "id": item["id"]} for i, item in enumerate(payload["items"])]
            self._answer(200, {"succeeded": len(results), "failed": 0, "results": results}, {"RateLimit-Remaining": "41"})
        elif self.path == "/sessions":
            self._answer(201, {"id": "0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b", "created_at": "2026-12-02T16:00:00.000Z"})
        else:
            self._answer(404, {"error": {"code": "ROUTE_NOT_FOUND", "message": "no", "details": {}}})


@pytest.fixture
def server():
    Handler.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_end_to_end_over_http(server):
    client = Client(server, "argus_k", register_atexit=False, fetch_limits=True, flush_interval=0.05)
    session = client.create_session(metadata={"app": "t"})
    ids = [client.track(session["id"], "c", "n", {"i": i}) for i in range(3)]
    assert client.flush(timeout=5)
    assert client.sent == 3
    path, headers, payload = Handler.received[-1]
    assert path == "/batch/events"
    assert headers["content-encoding"] == "gzip" and headers["x-api-key"] == "argus_k"
    assert [item["id"] for item in payload["items"]] == ids
    assert client.rate_limit == {"remaining": 41}
    client.shutdown()


def test_error_answers_are_responses_not_exceptions(server):
    resp = UrllibTransport().request("GET", server + "/limits", {"Accept": "application/json"}, None, 5)
    assert resp.status == 503 and resp.header("Retry-After") == "3"
    assert resp.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    client = Client(server, "k", register_atexit=False)
    with pytest.raises(ArgusError) as info:
        client.get_limits()
    assert (info.value.status, info.value.retry_after, info.value.retryable) == (503, 3.0, True)


def test_no_answer_is_a_transport_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError):
        UrllibTransport().request("GET", f"http://127.0.0.1:{port}/limits", {}, None, 2)
