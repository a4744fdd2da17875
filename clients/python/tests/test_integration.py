"""Against a running Argus (``make dev``): set ARGUS_URL and ARGUS_API_KEY (a key with the
ingest and read scopes), otherwise every test here is skipped.

    ARGUS_URL=http://127.0.0.1:3000 ARGUS_API_KEY=argus_... \
        .venv-clients/bin/python -m pytest clients/python/tests/test_integration.py
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from argus_sdk import ArgusError, Client

URL = os.environ.get("ARGUS_URL")
KEY = os.environ.get("ARGUS_API_KEY")

pytestmark = pytest.mark.skipif(not (URL and KEY), reason="integration: set ARGUS_URL and ARGUS_API_KEY")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # clients/python
# Reads trail writes a little (indexes, the aggregator's change stream): poll this long.
SETTLE_SECONDS = float(os.environ.get("ARGUS_TEST_SETTLE_SECONDS", "30"))


def eventually(check, timeout=SETTLE_SECONDS, interval=0.25):
    """Call ``check()`` until it returns a truthy value or ``timeout`` passes; return the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def utc_now():
    return dt.datetime.now(dt.timezone.utc)


def parse_ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
def errors():
    return []


@pytest.fixture
def client(errors):
    c = Client(URL, KEY, on_error=lambda item, err: errors.append((item, err)), register_atexit=False)
    yield c
    c.shutdown(timeout=30)


def test_limits_answer_the_bulk_sizes():
    with Client(URL, KEY, register_atexit=False) as c:
        limits = c.get_limits()
    assert limits["bulk"]["max_items"] >= 1
    assert limits["bulk"]["max_bytes"] >= 1
    assert "gzip" in limits["request"]["content_encodings"]


def test_1000_tracked_events_are_each_stored_exactly_once(client, errors):
    session = client.create_session(metadata={"suite": "argus-sdk-python"})
    assert client.get_session(session["id"])["id"] == session["id"]

    tracked = {}
    for i in range(1000):
        event_id = client.track(
            session_id=session["id"], category="sdk", name="tick", data={"i": i}, metadata={"suite": "python"},
        )
        assert event_id is not None
        tracked[event_id] = i
    assert len(tracked) == 1000
    assert client.flush(timeout=120)
    assert errors == []
    assert client.sent == 1000 and client.failed == 0 and client.dropped == 0
    assert client.stats()["requests"] >= 2  # batches of at most 500

    def read_back():
        counts = collections.Counter()
        data = {}
        for event in client.iter_events(session_id=session["id"], limit=1000):
            counts[event["id"]] += 1
            data[event["id"]] = event["data"]
        return (counts, data) if set(counts) >= set(tracked) else None

    result = eventually(read_back)
    assert result, "not every tracked event could be read back"
    counts, data = result
    assert set(counts) == set(tracked), "GET /events?session= lists events that were not tracked"
    assert [i for i, n in counts.items() if n != 1] == [], "an id is listed more than once"
    assert all(data[event_id] == {"i": i} for event_id, i in tracked.items())

    one = next(iter(tracked))
    event = client.get_event(one)
    assert (event["id"], event["session_id"], event["category"], event["name"]) == (one, session["id"], "sdk", "tick")
    assert event["stream"] == "default" and event["metadata"] == {"suite": "python"}


def test_datastream_events_are_queryable_and_aggregated(client, errors):
    stream = f"sdk-py-{uuid.uuid4().hex[:12]}"
    started = utc_now()
    sent = {}
    for i in range(30):
        event_type = "click" if i < 20 else "view"
        event_id = client.ingest.send_event(stream_id=stream, event_type=event_type, data={"i": i, "amount": i},
                                            metadata={"suite": "python"})
        assert event_id is not None
        sent[event_id] = (event_type, i)
    assert client.flush(timeout=60)
    assert errors == []
    assert client.sent == 30

    # GET /query/events, paged through next_cursor (pages of 7)
    def read_back():
        counts = collections.Counter()
        found = {}
        for event in client.iter_query_events(stream, limit=7):
            counts[event["event_id"]] += 1
            found[event["event_id"]] = (event["event_type"], event["data"]["i"])
        return (counts, found) if set(counts) >= set(sent) else None

    result = eventually(read_back)
    assert result, "not every DataStream event could be queried back"
    counts, found = result
    assert set(counts) == set(sent) and all(n == 1 for n in counts.values())
    assert found == sent

    # total_count comes from the aggregator's counts, which trail stored events a little
    page = eventually(lambda: (p := client.query_events(stream, event_type="view", limit=100))["total_count"] == 10 and p)
    assert page, "total_count never reached 10"
    assert all(e["stream_id"] == stream and e["event_type"] == "view" for e in page["events"])
    views = [e["event_id"] for e in client.iter_query_events(stream, event_type="view", limit=4)]
    assert sorted(views) == sorted(i for i, (t, _) in sent.items() if t == "view")

    # POST /query/aggregate: counts per event type (rollups; they trail by about a second)
    start = (started - dt.timedelta(hours=1)).replace(second=0, microsecond=0)
    end = start + dt.timedelta(hours=3)

    def counts_by_type():
        answer = client.aggregate(stream, start, end, [("*", "count")], group_by="event_type")
        got = {row["group"]: row["values"][0]["value"] for row in answer["results"]}
        return got if got == {"click": 20, "view": 10} else None

    assert eventually(counts_by_type) == {"click": 20, "view": 10}

    answer = client.aggregate(stream, start, end, [{"field": "data.amount", "operation": "sum"}, ("data.amount", "max")])
    assert [(v["operation"], v["value"]) for v in answer["results"][0]["values"]] == [("sum", sum(range(30))), ("max", 29)]

    status = eventually(lambda: (s := client.stream_status(stream))["events_processed"] >= 30 and s)
    assert status and status["stream_id"] == stream and status["events_processed"] == 30


def test_sent_at_corrects_a_skewed_client_clock(errors):
    skew = dt.timedelta(hours=2)  # the client's clock runs two hours fast
    c = Client(URL, KEY, now=lambda: utc_now() + skew, register_atexit=False,
               on_error=lambda item, err: errors.append((item, err)))
    try:
        session = c.create_session()
        ids = [c.track(session["id"], "sdk", "skewed", {"i": i}) for i in range(5)]
        assert c.flush(timeout=60)
        # without sent_at these would be TIMESTAMP_IN_FUTURE (more than 60 s ahead)
        assert errors == [] and c.sent == 5
        for event_id in ids:
            event = c.get_event(event_id)
            assert abs(parse_ts(event["timestamp"]) - utc_now()) < dt.timedelta(minutes=2)
            if "client_timestamp" in event:
                assert parse_ts(event["client_timestamp"]) - utc_now() > skew - dt.timedelta(minutes=2)
    finally:
        c.shutdown(timeout=30)


def test_validate_only_answers_but_writes_nothing(errors):
    with Client(URL, KEY, register_atexit=False, on_error=lambda item, err: errors.append((item, err))) as writer:
        session = writer.create_session()
    c = Client(URL, KEY, validate_only=True, register_atexit=False, on_error=lambda item, err: errors.append((item, err)))
    try:
        ids = [c.track(session["id"], "sdk", "dry-run", {"i": i}) for i in range(3)]
        assert c.flush(timeout=60)
        assert errors == [] and c.sent == 3
        for event_id in ids:
            with pytest.raises(ArgusError) as info:
                c.get_event(event_id)
            assert info.value.status == 404
        assert list(c.iter_events(session_id=session["id"])) == []
    finally:
        c.shutdown(timeout=30)


def test_quickstart_example_runs():
    env = {**os.environ, "ARGUS_URL": URL, "ARGUS_API_KEY": KEY}
    # the working tree's package, whether or not it is installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.fullmatch(r"sent 4 events, failed 0, dropped 0\n", proc.stdout), proc.stdout
