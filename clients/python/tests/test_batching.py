"""Batching thresholds, event shape, gzip bodies, flush/shutdown, thread safety."""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import uuid

import pytest

from fakes import SESSION, FakeTime, FakeTransport, json_response, make_client, track_n

RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_sends_a_batch_as_soon_as_batch_size_events_are_queued():
    transport = FakeTransport()
    client = make_client(transport, batch_size=10)  # flush_interval is an hour: only N can trigger
    ids = track_n(client, 25)
    assert transport.wait_for(2)
    assert [len(r.items) for r in transport.bulk()] == [10, 10]
    assert not transport.wait_for(3, timeout=0.1)  # the last 5 wait for N, T or flush()
    assert client.flush(timeout=2)
    assert [len(r.items) for r in transport.bulk()] == [10, 10, 5]
    assert [i for r in transport.bulk() for i in r.ids] == ids
    client.shutdown()


def test_sends_when_the_oldest_event_has_waited_flush_interval_fake_clock():
    fake_time = FakeTime()
    transport = FakeTransport()
    client = make_client(transport, fake_time, batch_size=500, flush_interval=5.0, clock=fake_time.clock)
    track_n(client, 3)
    assert not transport.wait_for(1, timeout=0.1)
    fake_time.advance(4.9)
    client._batcher.wake()
    assert not transport.wait_for(1, timeout=0.1)
    fake_time.advance(0.1)
    client._batcher.wake()
    assert transport.wait_for(1)
    assert len(transport.bulk()[0].items) == 3
    client.shutdown()


def test_sends_after_flush_interval_real_clock():
    transport = FakeTransport()
    client = make_client(transport, batch_size=500, flush_interval=0.05)
    started = time.monotonic()
    track_n(client, 2)
    assert transport.wait_for(1, timeout=2)
    assert time.monotonic() - started >= 0.045
    assert len(transport.bulk()[0].items) == 2
    client.shutdown()


def test_body_is_gzipped_json_with_sent_at_and_partial_mode():
    fake_time = FakeTime()
    transport = FakeTransport()
    client = make_client(transport, fake_time)
    track_n(client, 3)
    assert client.flush(timeout=2)
    rec = transport.bulk()[0]
    assert rec.method == "POST" and rec.path == "/batch/events"
    assert rec.headers["Content-Encoding"] == "gzip"
    assert rec.headers["Content-Type"] == "application/json"
    assert rec.headers["x-api-key"] == "argus_test_key"
    body = json.loads(gzip.decompress(rec.raw_body))  # the bytes on the wire decompress to JSON
    assert body["mode"] == "partial"
    assert body["sent_at"] == "2026-12-02T16:00:00.000Z"
    assert [item["data"] for item in body["items"]] == [{"i": 0}, {"i": 1}, {"i": 2}]
    client.shutdown()


def test_gzip_can_be_turned_off():
    transport = FakeTransport()
    client = make_client(transport, gzip=False)
    track_n(client, 2)
    assert client.flush(timeout=2)
    rec = transport.bulk()[0]
    assert "Content-Encoding" not in rec.headers
    assert json.loads(rec.raw_body)["items"][1]["data"] == {"i": 1}
    client.shutdown()


def test_event_shape_and_client_ids():
    fake_time = FakeTime()
    transport = FakeTransport()
    client = make_client(transport, fake_time)
    sid = uuid.UUID(SESSION)
    first = client.track(session_id=sid, category="page", name="view", data={"path": "/"})
    second = client.track(
        session_id=SESSION, category="page", name="view", data={"path": "/a"}, stream="web",
        timestamp="2026-12-01T00:00:00Z", metadata={"app": "ios"},
    )
    assert client.flush(timeout=2)
    items = transport.bulk()[0].items
    assert items[0] == {
        "id": first, "session_id": SESSION, "category": "page", "name": "view", "data": {"path": "/"},
        "timestamp": "2026-12-02T16:00:00.000Z",
    }
    assert items[1]["id"] == second and items[1]["stream"] == "web"
    assert items[1]["timestamp"] == "2026-12-01T00:00:00Z" and items[1]["metadata"] == {"app": "ios"}
    for event_id in (first, second):
        assert uuid.UUID(event_id).version == 7
    assert first != second
    client.shutdown()


def test_timestamps_from_datetimes_are_rfc3339_utc_with_milliseconds():
    import datetime as dt

    transport = FakeTransport()
    client = make_client(transport)
    plus2 = dt.timezone(dt.timedelta(hours=2))
    client.track(SESSION, "c", "n", {"a": 1}, timestamp=dt.datetime(2026, 1, 2, 5, 4, 5, 678999, tzinfo=plus2))
    client.track(SESSION, "c", "n", {"a": 1}, timestamp=dt.datetime(2026, 1, 2, 3, 4, 5))  # naive: UTC
    client.track(SESSION, "c", "n", {"a": 1}, timestamp=0)
    assert client.flush(timeout=2)
    stamps = [item["timestamp"] for item in transport.bulk()[0].items]
    assert stamps == ["2026-01-02T03:04:05.678Z", "2026-01-02T03:04:05.000Z", "1970-01-01T00:00:00.000Z"]
    assert all(RFC3339_MS.match(s) for s in stamps)
    client.shutdown()


def test_the_event_is_snapshotted_at_track_time():
    transport = FakeTransport()
    client = make_client(transport)
    data = {"n": 1}
    client.track(SESSION, "c", "n", data)
    data["n"] = 2  # a later change must not alter what is (re)sent under that id
    assert client.flush(timeout=2)
    assert transport.bulk()[0].items[0]["data"] == {"n": 1}
    client.shutdown()


def test_track_never_raises_on_events_that_are_not_json():
    errors = []
    transport = FakeTransport()
    client = make_client(transport, on_error=lambda item, err: errors.append((item, err)))
    assert client.track(SESSION, "c", "n", {"bad": object()}) is None
    assert client.track(SESSION, "c", "n", {"nan": float("nan")}) is None
    assert client.track(SESSION, "c", "n", {"a": 1}, timestamp=object()) is None
    assert client.ingest.send_event("s", "t", {"x": {1, 2}}) is None
    assert client.track(SESSION, "c", "n", {"ok": True}) is not None
    assert [e.code for _, e in errors] == ["INVALID_EVENT"] * 4
    assert errors[0][0]["name"] == "n" and errors[3][0]["stream_id"] == "s"
    assert client.failed == 4
    assert client.flush(timeout=2)
    assert client.sent == 1
    client.shutdown()


def test_flush_waits_for_the_batch_in_flight_and_honours_its_timeout():
    transport = FakeTransport()
    transport.gate = threading.Event()
    client = make_client(transport)
    track_n(client, 3)
    started = time.monotonic()
    assert client.flush(timeout=0.1) is False
    assert time.monotonic() - started < 1
    transport.gate.set()
    assert client.flush(timeout=2) is True
    assert client.sent == 3
    assert client.flush(timeout=0) is True  # nothing queued since: returns at once
    client.shutdown()


def test_flush_with_nothing_queued_returns_immediately_without_a_worker():
    client = make_client(FakeTransport())
    assert client.flush() is True
    assert client._batcher._thread is None
    assert client.shutdown() is True


def test_shutdown_drains_the_queue_stops_the_worker_and_then_drops():
    drops = []
    transport = FakeTransport()
    client = make_client(transport, batch_size=7, on_drop=lambda event, reason: drops.append((event, reason)))
    ids = track_n(client, 20)
    assert client.shutdown() is True
    assert [i for r in transport.bulk() for i in r.ids] == ids
    assert client.sent == 20 and client.queued == 0
    assert not client._batcher._thread.is_alive()
    assert client.track(SESSION, "c", "late", {"a": 1}) is None
    assert client.ingest.send_event("s", "t", {"a": 1}) is None
    assert client.dropped == 2
    assert [(e["name"] if "name" in e else e["event_type"], r) for e, r in drops] == [("late", "closed"), ("t", "closed")]
    assert client.shutdown() is True  # twice is fine


def test_context_manager_flushes_on_exit():
    transport = FakeTransport()
    with make_client(transport) as client:
        track_n(client, 4)
    assert client.sent == 4
    assert len(transport.bulk()) == 1


def test_shutdown_timeout_gives_up_on_what_cannot_be_delivered():
    errors = []
    transport = FakeTransport(lambda rec: json_response(503, {"error": {"code": "SERVICE_UNAVAILABLE", "message": "down", "details": {}}}))
    # Real (interruptible) sleeps with a long backoff: shutdown must not wait for them.
    client = make_client(transport, sleep=None, backoff_base=10, backoff_cap=10,
                         on_error=lambda item, err: errors.append(err.code))
    track_n(client, 3)
    started = time.monotonic()
    assert client.shutdown(timeout=0.2) is False
    assert time.monotonic() - started < 2
    assert errors == ["SHUTDOWN_TIMEOUT"] * 3
    assert client.failed == 3


def test_track_from_many_threads_sends_every_event_exactly_once():
    transport = FakeTransport()
    client = make_client(transport, batch_size=50)
    per_thread, threads = 500, 8
    results: list[list[str]] = [[] for _ in range(threads)]

    def worker(slot: int) -> None:
        for i in range(per_thread):
            results[slot].append(client.track(SESSION, "c", "n", {"t": slot, "i": i}))

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert client.flush(timeout=5)
    sent = [i for r in transport.bulk() for i in r.ids]
    tracked = [i for ids in results for i in ids]
    assert len(sent) == len(set(sent)) == per_thread * threads
    assert set(sent) == set(tracked)
    assert all(len(r.items) <= 50 for r in transport.bulk())
    # each thread's events go out in the order it tracked them
    position = {event_id: n for n, event_id in enumerate(sent)}
    for ids in results:
        assert [position[i] for i in ids] == sorted(position[i] for i in ids)
    client.shutdown()


def test_limits_size_the_requests():
    def handler(rec):
        if rec.path == "/limits":
            return json_response(200, {
                "bulk": {"max_items": 4, "max_bytes": 5242880, "max_atomic_items": 100},
                "request": {"max_body_bytes": 5242880, "max_decompressed_bytes": 5242880, "content_encodings": ["gzip"]},
                "rate_limits": {},
            })
        from fakes import default_handler
        return default_handler(rec)

    transport = FakeTransport(handler)
    client = make_client(transport, fetch_limits=True, batch_size=500)
    track_n(client, 10)
    assert client.flush(timeout=2)
    assert transport.requests[0].path == "/limits"
    assert [len(r.items) for r in transport.bulk()] == [4, 4, 2]
    client.shutdown()


def test_requests_stay_under_max_bytes():
    def handler(rec):
        if rec.path == "/limits":
            return json_response(200, {"bulk": {"max_items": 10000, "max_bytes": 4096}, "request": {}})
        from fakes import default_handler
        return default_handler(rec)

    transport = FakeTransport(handler)
    client = make_client(transport, fetch_limits=True)
    for i in range(30):
        client.track(SESSION, "c", "n", {"pad": "x" * 300, "i": i})
    assert client.flush(timeout=2)
    bulk = transport.bulk()
    assert len(bulk) > 1
    assert all(len(r.body) <= 4096 for r in bulk)
    assert sum(len(r.items) for r in bulk) == 30
    client.shutdown()


def test_limits_failure_falls_back_to_defaults():
    transport = FakeTransport()  # GET /limits: 404
    client = make_client(transport, fetch_limits=True)
    track_n(client, 5)
    assert client.flush(timeout=2)
    assert [len(r.items) for r in transport.bulk()] == [5]
    client.shutdown()


def test_validate_only_is_sent_on_the_ingestion_routes():
    transport = FakeTransport()
    client = make_client(transport, validate_only=True)
    track_n(client, 1)
    client.ingest.send_event("web", "click", {"a": 1})
    assert client.flush(timeout=2)
    assert [r.query for r in transport.bulk()] == [{"validate_only": "true"}] * 2
    client.shutdown()


def test_rejects_bad_configuration(monkeypatch):
    from argus_sdk import Client

    monkeypatch.delenv("ARGUS_URL", raising=False)
    monkeypatch.delenv("ARGUS_API_KEY", raising=False)
    with pytest.raises(ValueError):
        Client(api_key="k", register_atexit=False)
    with pytest.raises(ValueError):
        Client("http://x", register_atexit=False)
    with pytest.raises(ValueError):
        Client("ftp://x", "k", register_atexit=False)
    with pytest.raises(ValueError):
        Client("http://x", "k", batch_size=0, register_atexit=False)
