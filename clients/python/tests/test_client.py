"""Synchronous calls: requests, answers, paging, errors, configuration."""

from __future__ import annotations

import datetime as dt

import pytest

from argus_sdk import ArgusError, Client
from argus_sdk.transport import Response, TransportError
from fakes import API_KEY, BASE_URL, SESSION, FakeTransport, error_response, json_response, make_client


def routed(routes):
    """A handler answering ``routes[(method, path)]`` (a Response or a callable of the request)."""
    def handler(rec):
        answer = routes.get((rec.method, rec.path))
        if answer is None:
            return error_response(404, "ROUTE_NOT_FOUND")
        return answer(rec) if callable(answer) else answer
    return handler


def test_create_session_sends_metadata_and_returns_the_session():
    transport = FakeTransport(routed({("POST", "/sessions"): json_response(201, {"id": SESSION, "created_at": "t", "metadata": {"app": "web"}})}))
    client = make_client(transport)
    session = client.create_session(metadata={"app": "web"})
    assert session["id"] == SESSION
    rec = transport.requests[0]
    assert rec.url == f"{BASE_URL}/sessions"
    assert rec.json == {"metadata": {"app": "web"}}
    assert rec.headers["x-api-key"] == API_KEY
    assert rec.headers["Content-Type"] == "application/json"
    assert rec.headers["User-Agent"].startswith("argus-sdk-python/")
    assert "Content-Encoding" not in rec.headers
    client.create_session()
    assert transport.requests[1].json == {}


def test_errors_raise_argus_error_with_the_envelope():
    transport = FakeTransport(routed({
        ("GET", f"/sessions/{SESSION}"): error_response(404, "NOT_FOUND", "no such session", {"resource": "session", "id": SESSION}),
        ("GET", "/sessions"): error_response(429, "RATE_LIMITED", "slow down", {"reset_seconds": 30}, {"retry-after": "30"}),
        ("GET", "/limits"): Response(401, {}, b'{"message":"Unauthorized"}'),
        ("GET", "/events"): Response(502, {}, b"<html>bad gateway</html>"),
    }))
    client = make_client(transport)
    with pytest.raises(ArgusError) as info:
        client.get_session(SESSION)
    err = info.value
    assert (err.status, err.code, err.message) == (404, "NOT_FOUND", "no such session")
    assert err.details == {"resource": "session", "id": SESSION}
    assert not err.retryable
    assert "404 NOT_FOUND" in str(err)

    with pytest.raises(ArgusError) as info:
        client.list_sessions()
    assert (info.value.status, info.value.code, info.value.retry_after, info.value.retryable) == (429, "RATE_LIMITED", 30.0, True)

    with pytest.raises(ArgusError) as info:
        client.get_limits()
    assert (info.value.status, info.value.code, info.value.message) == (401, "UNAUTHORIZED", "Unauthorized")

    with pytest.raises(ArgusError) as info:
        client.list_events()
    assert (info.value.status, info.value.code) == (502, "HTTP_502") and info.value.retryable


def test_network_errors_raise_argus_error():
    def handler(rec):
        raise TransportError("connection refused")

    client = make_client(FakeTransport(handler))
    with pytest.raises(ArgusError) as info:
        client.create_session()
    assert info.value.status is None and info.value.code == "NETWORK_ERROR" and info.value.retryable
    assert isinstance(info.value.__cause__, TransportError)


def test_list_events_maps_session_id_to_the_session_parameter_and_pages():
    pages = {
        None: {"items": [{"id": "a"}, {"id": "b"}], "next_cursor": "c1"},
        "c1": {"items": [], "next_cursor": "c2"},  # an empty page with a cursor: keep going
        "c2": {"items": [{"id": "c"}], "next_cursor": None},
    }
    transport = FakeTransport(routed({("GET", "/events"): lambda rec: json_response(200, pages[rec.query.get("cursor")])}))
    client = make_client(transport)
    ids = [e["id"] for e in client.iter_events(session_id=SESSION, stream="web", limit=1000)]
    assert ids == ["a", "b", "c"]
    assert [r.query for r in transport.requests] == [
        {"session": SESSION, "stream": "web", "limit": "1000"},
        {"session": SESSION, "stream": "web", "limit": "1000", "cursor": "c1"},
        {"session": SESSION, "stream": "web", "limit": "1000", "cursor": "c2"},
    ]
    page = client.list_events(category="page", name="view", timestamp_gte=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                              timestamp_lte="2026-02-01T00:00:00Z", include_deleted=True, cursor="c2")
    assert page["items"] == [{"id": "c"}]
    assert transport.requests[-1].query == {
        "category": "page", "name": "view", "timestamp__gte": "2026-01-01T00:00:00.000Z",
        "timestamp__lte": "2026-02-01T00:00:00Z", "include_deleted": "true", "cursor": "c2",
    }


def test_sessions_and_events_by_id():
    transport = FakeTransport(routed({
        ("GET", f"/sessions/{SESSION}"): json_response(200, {"id": SESSION}),
        ("GET", "/events/e%201"): json_response(200, {"id": "e 1"}),
        ("GET", "/sessions"): lambda rec: json_response(200, {"items": [{"id": rec.query.get("cursor", "s1")}],
                                                              "next_cursor": None if rec.query.get("cursor") else "s2"}),
    }))
    client = make_client(transport)
    assert client.get_session(SESSION)["id"] == SESSION
    assert client.get_event("e 1")["id"] == "e 1"
    assert transport.requests[-1].url == f"{BASE_URL}/events/e%201"  # ids are one path segment
    assert [s["id"] for s in client.iter_sessions(limit=5)] == ["s1", "s2"]
    assert client.list_sessions(limit=2)["next_cursor"] == "s2"


def test_query_events_aggregate_and_stream_status():
    transport = FakeTransport(routed({
        ("GET", "/query/events"): lambda rec: json_response(200, {
            "events": [{"event_id": rec.query.get("cursor", "e1")}], "total_count": 2,
            "has_more": "cursor" not in rec.query, "next_cursor": None if "cursor" in rec.query else "e2"}),
        ("POST", "/query/aggregate"): json_response(200, {"results": [], "source": "rollups"}),
        ("GET", "/streams/web/status"): json_response(200, {"stream_id": "web", "status": "active"}),
    }))
    client = make_client(transport)
    page = client.query_events("web", start_time="2026-12-01T00:00:00Z", event_type="click", limit=100, offset=10)
    assert page["total_count"] == 2
    assert transport.requests[-1].query == {"stream_id": "web", "start_time": "2026-12-01T00:00:00Z",
                                            "event_type": "click", "limit": "100", "offset": "10"}
    assert [e["event_id"] for e in client.iter_query_events("web", limit=1)] == ["e1", "e2"]

    answer = client.aggregate(
        "web", start=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), end="2026-12-02T00:00:00Z",
        aggregations=[("*", "count"), {"field": "data.amount", "operation": "sum"}], group_by="event_type", interval="hour",
    )
    assert answer["source"] == "rollups"
    assert transport.requests[-1].json == {
        "stream_id": "web",
        "time_window": {"start": "2026-12-01T00:00:00.000Z", "end": "2026-12-02T00:00:00Z"},
        "aggregations": [{"field": "*", "operation": "count"}, {"field": "data.amount", "operation": "sum"}],
        "group_by": "event_type",
        "interval": "hour",
    }
    client.aggregate("web", "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z", [("*", "count")])
    assert "group_by" not in transport.requests[-1].json and "interval" not in transport.requests[-1].json
    assert client.stream_status("web")["status"] == "active"


def test_rate_limit_headers_are_remembered():
    headers = {"ratelimit-limit": "1000", "ratelimit-remaining": "998", "ratelimit-reset": "1200",
               "argus-events-limit": "100000", "argus-events-remaining": "99000"}
    transport = FakeTransport(routed({("GET", "/limits"): json_response(200, {"bulk": {}}, headers)}))
    client = make_client(transport)
    assert client.rate_limit is None
    client.get_limits()
    assert client.rate_limit == {"limit": 1000, "remaining": 998, "reset": 1200, "events_limit": 100000, "events_remaining": 99000}


def test_configuration_falls_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("ARGUS_URL", "http://env.test:3000/")
    monkeypatch.setenv("ARGUS_API_KEY", "argus_env")
    transport = FakeTransport(routed({("GET", "/limits"): json_response(200, {})}))
    client = Client(transport=transport, register_atexit=False)
    client.get_limits()
    assert transport.requests[0].url == "http://env.test:3000/limits"
    assert transport.requests[0].headers["x-api-key"] == "argus_env"
    # explicit arguments win
    client = Client("http://arg.test", "argus_arg", transport=transport, register_atexit=False)
    client.get_limits()
    assert transport.requests[1].url == "http://arg.test/limits"
    assert transport.requests[1].headers["x-api-key"] == "argus_arg"


def test_bearer_token_auth(monkeypatch):
    monkeypatch.delenv("ARGUS_API_KEY", raising=False)
    transport = FakeTransport(routed({("GET", "/limits"): json_response(200, {})}))
    client = Client(BASE_URL, bearer_token="jwt.token.here", transport=transport, register_atexit=False)
    client.get_limits()
    assert transport.requests[0].headers["Authorization"] == "Bearer jwt.token.here"
    assert "x-api-key" not in transport.requests[0].headers


def test_atexit_hook_is_registered_and_removed_by_shutdown(monkeypatch):
    import atexit

    registered = []
    monkeypatch.setattr(atexit, "register", lambda fn: registered.append(fn))
    monkeypatch.setattr(atexit, "unregister", lambda fn: registered.remove(fn))
    transport = FakeTransport()
    client = Client(BASE_URL, API_KEY, transport=transport, fetch_limits=False)
    assert len(registered) == 1
    client.track(SESSION, "c", "n", {"a": 1})
    registered[0]()  # what the interpreter does at exit: flush what is queued
    assert client.sent == 1
    client.shutdown()
    assert registered == []
