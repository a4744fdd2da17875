"""Retry policy: backoff, Retry-After, per-item 503, permanent 400/409, 413 split, network errors."""

from __future__ import annotations

import random

import pytest

from argus_sdk.errors import parse_retry_after
from argus_sdk.transport import TransportError
from fakes import FakeTime, FakeTransport, MaxRandom, error_response, json_response, make_client, report, track_n


class Script:
    """Answers the n-th bulk request with ``answers[n]`` (a Response, a callable of the request,
    or an exception to raise); after the script runs out, every item is 201."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, rec):
        n = self.calls
        self.calls += 1
        answer = self.answers[n] if n < len(self.answers) else None
        if answer is None:
            return report(rec)
        if isinstance(answer, BaseException):
            raise answer
        return answer(rec) if callable(answer) else answer


def collect():
    errors = []
    return errors, lambda item, err: errors.append((item, err))


def test_429_is_retried_after_at_least_retry_after_with_the_same_ids_and_a_new_sent_at():
    fake_time = FakeTime()
    transport = FakeTransport(Script(error_response(429, "RATE_LIMITED", details={"reset_seconds": 7}, headers={"retry-after": "7"})))
    client = make_client(transport, fake_time)
    ids = track_n(client, 5)
    assert client.flush(timeout=2)
    first, second = transport.bulk()
    assert first.ids == second.ids == ids
    assert first.items == second.items  # byte-for-byte the same events
    assert fake_time.sleeps == [7.0]  # uniform(0, 0.5) = 0.5 here, but Retry-After says 7
    assert first.json["sent_at"] == "2026-12-02T16:00:00.000Z"
    assert second.json["sent_at"] == "2026-12-02T16:00:07.000Z"  # set at each attempt
    assert client.sent == 5 and client.failed == 0
    assert client.stats()["retries"] == 1
    client.shutdown()


def test_429_without_the_header_waits_reset_seconds():
    fake_time = FakeTime()
    transport = FakeTransport(Script(error_response(429, "RATE_LIMITED", details={"reset_seconds": 12})))
    client = make_client(transport, fake_time)
    track_n(client, 1)
    assert client.flush(timeout=2)
    assert fake_time.sleeps == [12.0]
    client.shutdown()


def test_retry_after_shorter_than_the_backoff_keeps_the_backoff():
    fake_time = FakeTime()
    transport = FakeTransport(Script(
        error_response(503, "SERVICE_UNAVAILABLE", headers={"retry-after": "0"}),
        error_response(503, "SERVICE_UNAVAILABLE", headers={"retry-after": "1"}),
        error_response(503, "SERVICE_UNAVAILABLE", headers={"retry-after": "1"}),
    ))
    client = make_client(transport, fake_time)
    track_n(client, 1)
    assert client.flush(timeout=2)
    assert fake_time.sleeps == [0.5, 1.0, 2.0]  # max(Retry-After, full-jitter draw at its ceiling)
    client.shutdown()


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retried(status):
    transport = FakeTransport(Script(error_response(status, "BOOM"), error_response(status, "BOOM")))
    client = make_client(transport)
    ids = track_n(client, 3)
    assert client.flush(timeout=2)
    assert [r.ids for r in transport.bulk()] == [ids, ids, ids]
    assert client.sent == 3
    client.shutdown()


def test_backoff_is_full_jitter_exponential_capped_and_attempts_are_bounded():
    fake_time = FakeTime()
    rng = MaxRandom()
    errors, on_error = collect()
    transport = FakeTransport(lambda rec: error_response(503, "SERVICE_UNAVAILABLE", "down"))
    client = make_client(transport, fake_time, random=rng, max_attempts=9, on_error=on_error)
    ids = track_n(client, 2)
    assert client.flush(timeout=2)
    assert len(transport.bulk()) == 9
    assert [b for _, b in rng.calls] == [0.5, 1, 2, 4, 8, 16, 30, 30]  # min(cap 30, 0.5 * 2**n)
    assert all(a == 0 for a, _ in rng.calls)  # full jitter: from 0
    assert fake_time.sleeps == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert [item["id"] for item, _ in errors] == ids
    assert all(err.status == 503 and err.code == "SERVICE_UNAVAILABLE" for _, err in errors)
    assert client.failed == 2 and client.sent == 0
    client.shutdown()


def test_default_max_attempts_is_8_and_the_jitter_is_random():
    fake_time = FakeTime()
    transport = FakeTransport(lambda rec: error_response(500, "INTERNAL"))
    client = make_client(transport, fake_time, random=random.Random(42))
    track_n(client, 1)
    assert client.flush(timeout=2)
    assert len(transport.bulk()) == 8
    ceilings = [0.5, 1, 2, 4, 8, 16, 30]
    assert len(fake_time.sleeps) == 7
    assert all(0 <= s <= c for s, c in zip(fake_time.sleeps, ceilings))
    assert len(set(fake_time.sleeps)) == 7
    client.shutdown()


def test_per_item_503_resends_only_those_items_with_their_ids():
    transport = FakeTransport(Script(lambda rec: report(rec, [201, 503, 201, 503, 200])))
    client = make_client(transport)
    ids = track_n(client, 5)
    assert client.flush(timeout=2)
    first, second = transport.bulk()
    assert first.ids == ids
    assert second.ids == [ids[1], ids[3]]
    assert second.items == [first.items[1], first.items[3]]
    assert client.sent == 5 and client.failed == 0
    assert client.stats()["duplicates"] == 1
    client.shutdown()


def test_per_item_503_that_never_succeeds_is_reported_after_max_attempts():
    errors, on_error = collect()
    transport = FakeTransport(lambda rec: report(rec, [503] * len(rec.ids)))
    client = make_client(transport, max_attempts=3, on_error=on_error)
    ids = track_n(client, 2)
    assert client.flush(timeout=2)
    assert len(transport.bulk()) == 3
    assert [(item["id"], err.code) for item, err in errors] == [(ids[0], "RETRY_LATER"), (ids[1], "RETRY_LATER")]
    client.shutdown()


def test_400_and_409_items_are_not_retried_and_are_reported():
    errors, on_error = collect()
    transport = FakeTransport(Script(lambda rec: report(rec, [201, 400, 409, 201])))
    client = make_client(transport, on_error=on_error)
    ids = track_n(client, 4)
    assert client.flush(timeout=2)
    assert len(transport.bulk()) == 1
    assert [(item["id"], item["data"], err.status, err.code) for item, err in errors] == [
        (ids[1], {"i": 1}, 400, "VALIDATION_FAILED"),
        (ids[2], {"i": 2}, 409, "ID_CONFLICT"),
    ]
    assert errors[0][1].details == {"field": "data"}
    assert client.sent == 2 and client.failed == 2
    client.shutdown()


def test_a_whole_request_4xx_is_permanent_for_every_item():
    errors, on_error = collect()
    transport = FakeTransport(lambda rec: error_response(401, "INVALID_API_KEY", "unknown key"))
    client = make_client(transport, on_error=on_error)
    track_n(client, 3)
    assert client.flush(timeout=2)
    assert len(transport.bulk()) == 1
    assert [err.code for _, err in errors] == ["INVALID_API_KEY"] * 3
    client.shutdown()


def test_413_splits_the_batch_in_half_until_it_fits():
    def handler(rec):
        if len(rec.items) > 3:
            return error_response(413, "BATCH_TOO_LARGE", details={"max_items": 3, "max_bytes": 5242880})
        return report(rec)

    fake_time = FakeTime()
    transport = FakeTransport(handler)
    client = make_client(transport, fake_time)
    ids = track_n(client, 10)
    assert client.flush(timeout=2)
    sizes = [len(r.items) for r in transport.bulk()]
    assert sizes == [10, 5, 2, 3, 5, 2, 3]
    delivered = [i for r in transport.bulk() if len(r.items) <= 3 for i in r.ids]
    assert delivered == ids  # each exactly once, in order
    assert fake_time.sleeps == []  # a split is not a backoff
    assert client.sent == 10
    client.shutdown()


def test_a_429_for_more_events_than_the_whole_hourly_quota_splits_the_batch():
    def handler(rec):
        n = len(rec.items)
        if n > 2:
            return error_response(429, "RATE_LIMITED", details={"limit": "events_per_hour", "value": 2, "requested": n,
                                                                "window_seconds": 3600, "reset_seconds": 900},
                                  headers={"retry-after": "900"})
        return report(rec)

    fake_time = FakeTime()
    transport = FakeTransport(handler)
    client = make_client(transport, fake_time)
    ids = track_n(client, 4)
    assert client.flush(timeout=2)
    assert [len(r.items) for r in transport.bulk()] == [4, 2, 2]
    assert [i for r in transport.bulk()[1:] for i in r.ids] == ids
    assert fake_time.sleeps == []
    client.shutdown()


def test_a_single_item_413_is_reported_not_retried():
    errors, on_error = collect()
    transport = FakeTransport(lambda rec: error_response(413, "PAYLOAD_TOO_LARGE"))
    client = make_client(transport, on_error=on_error)
    track_n(client, 2)
    assert client.flush(timeout=2)
    assert [len(r.items) for r in transport.bulk()] == [2, 1, 1]
    assert [err.code for _, err in errors] == ["PAYLOAD_TOO_LARGE"] * 2
    client.shutdown()


def test_network_errors_are_retried_with_the_same_ids():
    fake_time = FakeTime()
    transport = FakeTransport(Script(TransportError("connection refused"), TransportError("reset")))
    client = make_client(transport, fake_time)
    ids = track_n(client, 4)
    assert client.flush(timeout=2)
    assert [r.ids for r in transport.bulk()] == [ids, ids, ids]
    assert fake_time.sleeps == [0.5, 1.0]
    assert client.sent == 4
    client.shutdown()


def test_network_errors_past_max_attempts_are_reported_as_network_error():
    errors, on_error = collect()
    transport = FakeTransport(lambda rec: (_ for _ in ()).throw(TransportError("down")))
    client = make_client(transport, max_attempts=2, on_error=on_error)
    track_n(client, 1)
    assert client.flush(timeout=2)
    assert [(err.status, err.code) for _, err in errors] == [(None, "NETWORK_ERROR")]
    client.shutdown()


def test_unreadable_or_incomplete_reports_are_resent():
    def partial_report(rec):
        return json_response(200, {"succeeded": 1, "failed": 0, "results": [{"index": 0, "status": 201, "id": rec.ids[0]}]})

    transport = FakeTransport(Script(json_response(200, "not a report"), partial_report))
    client = make_client(transport)
    ids = track_n(client, 2)
    assert client.flush(timeout=2)
    assert [r.ids for r in transport.bulk()] == [ids, ids, [ids[1]]]
    assert client.sent == 2
    client.shutdown()


def test_a_415_for_gzip_falls_back_to_plain_json_once():
    transport = FakeTransport(Script(error_response(415, "UNSUPPORTED_MEDIA_TYPE")))
    client = make_client(transport)
    track_n(client, 1)
    track_n(client, 1)
    assert client.flush(timeout=2)
    bulk = transport.bulk()
    assert [r.headers.get("Content-Encoding") for r in bulk] == ["gzip", None]
    assert client.sent == 2
    client.shutdown()


def test_on_error_raising_does_not_stop_the_worker():
    def boom(item, err):
        raise RuntimeError("callback bug")

    transport = FakeTransport(Script(lambda rec: report(rec, [400])))
    client = make_client(transport, on_error=boom)
    track_n(client, 1)
    assert client.flush(timeout=2)
    track_n(client, 1)
    assert client.flush(timeout=2)
    assert client.sent == 1 and client.failed == 1
    client.shutdown()


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == 30.0
