"""Test doubles: a fake HTTP transport (no network) and a fake clock."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

from argus_sdk import Client
from argus_sdk.transport import Response

BASE_URL = "http://argus.test"
API_KEY = "argus_test_key"


@dataclass
class Recorded:
    method: str
    url: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_body: bytes | None
    body: bytes | None  # decompressed
    json: Any = field(default=None)

    @property
    def items(self) -> list[dict]:
        """The events of a bulk request (``items`` of /batch/events, ``events`` of /ingest/batch)."""
        return self.json.get("items") or self.json.get("events") or []

    @property
    def ids(self) -> list[str]:
        return [item.get("id") or item.get("event_id") for item in self.items]


def json_response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Response:
    data = b"" if body is None else json.dumps(body).encode()
    return Response(status, {"content-type": "application/json", **(headers or {})}, data)


def error_response(status: int, code: str, message: str = "", details: dict | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": {"code": code, "message": message or code, "details": details or {}}}, headers)


def report(rec: Recorded, statuses: list[int] | None = None) -> Response:
    """A partial-mode bulk report for ``rec``: every item 201 unless ``statuses`` says otherwise."""
    results = []
    for index, event_id in enumerate(rec.ids):
        status = statuses[index] if statuses else 201
        result: dict[str, Any] = {"index": index, "status": status}
        if status in (200, 201):
            result["id"] = event_id
            if status == 200:
                result["duplicate"] = True
        elif status == 503:
            result["id"] = event_id
            result["error"] = {"code": "RETRY_LATER", "message": "not written in time", "details": {"retryable": True}}
        elif status == 409:
            result["error"] = {"code": "ID_CONFLICT", "message": "id reused with other content", "details": {"id": event_id}}
        else:
            result["error"] = {"code": "VALIDATION_FAILED", "message": "invalid", "details": {"field": "data"}}
        results.append(result)
    ok = sum(1 for r in results if r["status"] in (200, 201))
    return json_response(200, {"succeeded": ok, "failed": len(results) - ok, "results": results})


def default_handler(rec: Recorded) -> Response:
    if rec.method == "POST" and rec.path in ("/batch/events", "/ingest/batch"):
        return report(rec)
    return error_response(404, "ROUTE_NOT_FOUND")


class FakeTransport:
    """Records every request; answers with ``handler(recorded)`` (which may raise)."""

    def __init__(self, handler: Callable[[Recorded], Response] | None = None) -> None:
        self.handler = handler or default_handler
        self.requests: list[Recorded] = []
        self.gate: threading.Event | None = None  # when set, requests wait for it to open
        self._cond = threading.Condition()

    def request(self, method, url, headers, body, timeout) -> Response:
        parts = urllib.parse.urlsplit(url)
        decoded = body
        if body is not None and headers.get("Content-Encoding") == "gzip":
            decoded = gzip.decompress(body)
        rec = Recorded(
            method=method,
            url=url,
            path=parts.path,
            query=dict(urllib.parse.parse_qsl(parts.query)),
            headers=dict(headers),
            raw_body=body,
            body=decoded,
            json=json.loads(decoded) if decoded else None,
        )
        with self._cond:
            self.requests.append(rec)
            self._cond.notify_all()
        if self.gate is not None:
            assert self.gate.wait(5), "gate never opened"
        return self.handler(rec)

    def bulk(self) -> list[Recorded]:
        with self._cond:
            return [r for r in self.requests if r.path in ("/batch/events", "/ingest/batch")]

    def wait_for(self, count: int, timeout: float = 2.0, bulk_only: bool = True) -> bool:
        """Wait until at least ``count`` (bulk) requests were made."""
        def seen() -> int:
            return len([r for r in self.requests if not bulk_only or r.path in ("/batch/events", "/ingest/batch")])
        with self._cond:
            return self._cond.wait_for(lambda: seen() >= count, timeout)


class FakeTime:
    """A monotonic clock, a wall clock and a sleep that only advance when told (or slept)."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = dt.datetime(2026, 12, 2, 16, 0, 0, tzinfo=dt.timezone.utc)
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.mono

    def now(self) -> dt.datetime:
        with self._lock:
            return self.wall

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.mono += seconds
            self.wall += dt.timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


class MaxRandom:
    """``uniform(a, b)`` always returns ``b``: the backoff ceiling, for exact assertions."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return b


def make_client(transport: FakeTransport | None = None, fake_time: FakeTime | None = None, **options: Any) -> Client:
    """A client on a fake transport, with no GET /limits, no atexit hook and fast fake time."""
    fake_time = fake_time or FakeTime()
    defaults: dict[str, Any] = {
        "fetch_limits": False,
        "register_atexit": False,
        "flush_interval": 3600.0,
        "sleep": fake_time.sleep,
        "now": fake_time.now,
        "random": MaxRandom(),
    }
    defaults.update(options)
    return Client(BASE_URL, API_KEY, transport=transport or FakeTransport(), **defaults)


SESSION = "0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b"


def track_n(client: Client, n: int, **fields: Any) -> list[str]:
    ids = []
    for i in range(n):
        event_id = client.track(session_id=SESSION, category="test", name="n", data={"i": i}, **fields)
        assert event_id is not None
        ids.append(event_id)
    return ids
