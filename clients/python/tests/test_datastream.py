"""The DataStream-style surface: client.ingest.send_event, batched through POST /ingest/batch."""

from __future__ import annotations

import uuid

from fakes import SESSION, FakeTime, FakeTransport, make_client, report


def test_events_are_grouped_by_stream_one_request_per_stream():
    fake_time = FakeTime()
    transport = FakeTransport()
    client = make_client(transport, fake_time)
    a1 = client.ingest.send_event(stream_id="web", event_type="click", data={"n": 1})
    b1 = client.ingest.send_event(stream_id="mobile", event_type="open", data={"n": 2}, metadata={"os": "ios"})
    argus = client.track(SESSION, "page", "view", {"n": 3})
    a2 = client.ingest.send_event("web", "view", {"n": 4}, timestamp="2026-12-01T10:00:00Z")
    assert client.flush(timeout=2)
    bulk = transport.bulk()
    assert [(r.path, r.json.get("stream_id")) for r in bulk] == [
        ("/ingest/batch", "web"), ("/ingest/batch", "mobile"), ("/batch/events", None),
    ]
    web, mobile, events = bulk
    assert web.ids == [a1, a2] and mobile.ids == [b1] and events.ids == [argus]
    assert web.json["sent_at"] == "2026-12-02T16:00:00.000Z"
    assert web.headers["Content-Encoding"] == "gzip"
    assert web.items[0] == {"event_id": a1, "event_type": "click", "timestamp": "2026-12-02T16:00:00.000Z", "data": {"n": 1}}
    assert web.items[1]["timestamp"] == "2026-12-01T10:00:00Z"
    assert mobile.items[0]["metadata"] == {"os": "ios"}
    assert uuid.UUID(a1).version == 7
    assert client.sent == 4
    client.shutdown()


def test_datastream_events_follow_the_same_retry_rules():
    calls = {"n": 0}

    def handler(rec):
        calls["n"] += 1
        if calls["n"] == 1:
            return report(rec, [201, 503, 400])
        return report(rec)

    errors = []
    transport = FakeTransport(handler)
    client = make_client(transport, on_error=lambda item, err: errors.append((item, err.code)))
    ids = [client.ingest.send_event("web", "click", {"i": i}) for i in range(3)]
    assert client.flush(timeout=2)
    first, second = transport.bulk()
    assert second.ids == [ids[1]] and second.json["stream_id"] == "web"
    assert second.items == [first.items[1]]
    assert errors == [({"event_id": ids[2], "event_type": "click", "timestamp": first.items[2]["timestamp"],
                        "data": {"i": 2}, "stream_id": "web"}, "VALIDATION_FAILED")]
    client.shutdown()


def test_an_invalid_stream_fails_only_its_own_events():
    from fakes import error_response

    def handler(rec):
        if rec.json.get("stream_id") == "bad stream":
            return error_response(400, "VALIDATION_FAILED", details={"field": "stream_id"})
        return report(rec)

    errors = []
    transport = FakeTransport(handler)
    client = make_client(transport, on_error=lambda item, err: errors.append(item["stream_id"]))
    client.ingest.send_event("bad stream", "t", {"a": 1})
    client.ingest.send_event("good", "t", {"a": 1})
    assert client.flush(timeout=2)
    assert errors == ["bad stream"]
    assert client.sent == 1 and client.failed == 1
    client.shutdown()
