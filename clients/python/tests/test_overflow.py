"""The bounded queue: when full, the NEW event is dropped, counted and reported; track never blocks."""

from __future__ import annotations

import threading
import time

from fakes import SESSION, FakeTransport, make_client, track_n


def test_a_full_queue_drops_the_new_event_counts_it_and_calls_on_drop():
    drops = []
    transport = FakeTransport()
    transport.gate = threading.Event()  # the first batch stays in flight until the gate opens
    client = make_client(transport, batch_size=2, max_queue_size=4,
                         on_drop=lambda event, reason: drops.append((event["data"]["i"], reason)))
    in_flight = track_n(client, 2)
    assert transport.wait_for(1)  # the worker took those two: the queue is empty again
    queued = track_n(client, 4)
    started = time.monotonic()
    rejected = [client.track(SESSION, "c", "n", {"i": 100 + i}) for i in range(3)]
    assert time.monotonic() - started < 0.5  # never blocks
    assert rejected == [None, None, None]
    assert client.dropped == 3
    assert drops == [(100, "queue_full"), (101, "queue_full"), (102, "queue_full")]
    assert client.queued == 4
    transport.gate.set()
    assert client.flush(timeout=2)
    # the events already queued were kept; only the new ones were dropped
    assert [i for r in transport.bulk() for i in r.ids] == in_flight + queued
    assert client.sent == 6
    stats = client.stats()
    assert stats["dropped"] == 3 and stats["enqueued"] == 6
    # room again: tracking works
    assert client.track(SESSION, "c", "n", {"i": 7}) is not None
    client.shutdown()


def test_on_drop_raising_does_not_reach_the_caller():
    def boom(event, reason):
        raise RuntimeError("callback bug")

    transport = FakeTransport()
    transport.gate = threading.Event()
    client = make_client(transport, batch_size=1, max_queue_size=1, on_drop=boom)
    client.track(SESSION, "c", "n", {"i": 0})
    assert transport.wait_for(1)
    client.track(SESSION, "c", "n", {"i": 1})
    assert client.track(SESSION, "c", "n", {"i": 2}) is None  # boom is swallowed (and logged)
    assert client.dropped == 1
    transport.gate.set()
    assert client.shutdown(timeout=2)


def test_dropped_without_a_callback_is_still_counted():
    transport = FakeTransport()
    transport.gate = threading.Event()
    client = make_client(transport, batch_size=1, max_queue_size=1)
    client.track(SESSION, "c", "n", {"i": 0})
    assert transport.wait_for(1)
    client.track(SESSION, "c", "n", {"i": 1})
    for i in range(5):
        assert client.track(SESSION, "c", "n", {"i": i}) is None
    assert client.dropped == 5
    transport.gate.set()
    assert client.shutdown(timeout=2)
    assert client.sent == 2
