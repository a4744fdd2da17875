"""The bounded queue, its background worker and the retry policy.

``track()``/``send_event()`` put an already-encoded event on the queue and return. One daemon
worker thread takes batches off the queue (when ``batch_size`` events are queued, when the
oldest queued event has waited ``flush_interval`` seconds, or when ``flush()`` asks) and sends
them: Argus events through ``POST /batch/events``, DataStream events through
``POST /ingest/batch``, one request per stream. See README.md, "Batching, overflow and retries".
"""

from __future__ import annotations

import gzip as _gzip
import json
import logging
import random as _random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ._util import format_timestamp, utc_now
from .errors import BAD_RESPONSE, SHUTDOWN_TIMEOUT, ArgusError
from .transport import Response

log = logging.getLogger("argus_sdk")

ARGUS = "argus"  # POST /batch/events
INGEST = "ingest"  # POST /ingest/batch

DEFAULT_MAX_ITEMS = 10_000
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
# Room for the envelope around the items: {"mode":"partial","sent_at":"…","items":[…]}.
_ENVELOPE_BYTES = 512

# A request function: (method, path, query, body, gzip, timeout) -> Response; raises on no answer.
RequestFn = Callable[..., Response]


@dataclass(slots=True)
class _Item:
    seq: int
    kind: str
    stream: str | None  # the stream_id of a DataStream event
    id: str
    body: bytes  # the event's JSON, encoded once at track time: every attempt sends these bytes
    enqueued_at: float


class Batcher:
    def __init__(
        self,
        request: RequestFn,
        *,
        batch_size: int,
        flush_interval: float,
        max_queue_size: int,
        max_attempts: int,
        backoff_base: float,
        backoff_cap: float,
        gzip: bool,
        fetch_limits: bool,
        validate_only: bool,
        on_error: Callable[[dict, ArgusError], Any] | None,
        on_drop: Callable[[dict, str], Any] | None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Any] | None = None,
        random: _random.Random | None = None,
        now: Callable[[], Any] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_queue_size < 1:
            raise ValueError("max_queue_size must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        self._request = request
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue_size = max_queue_size
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._gzip = gzip
        self._fetch_limits = fetch_limits
        self._validate_only = validate_only
        self._on_error = on_error
        self._on_drop = on_drop
        self._clock = clock or time.monotonic
        self._abandon = threading.Event()
        self._sleep = sleep or self._abandon.wait  # the default sleep ends early on shutdown timeout
        self._random = random or _random.Random()
        self._now = now or utc_now
        self._max_items = DEFAULT_MAX_ITEMS
        self._max_bytes = DEFAULT_MAX_BYTES

        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Item] = deque()
        self._seq = 0  # the last sequence number given to a queued event
        self._done = 0  # every event with seq <= _done has been sent or given up
        self._flush_to = 0  # flush() asked for everything up to this seq
        self._closed = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.stats = {"enqueued": 0, "sent": 0, "duplicates": 0, "failed": 0, "dropped": 0, "retries": 0, "requests": 0}

    # ----------------------------------------------------------------- caller side (any thread)

    def enqueue(self, kind: str, stream: str | None, event_id: str, body: bytes, event: dict) -> bool:
        """Queue one encoded event. Never blocks on I/O, never raises; False if it was dropped."""
        with self._cond:
            if self._closed:
                reason = "closed"
            elif len(self._queue) >= self._max_queue_size:
                reason = "queue_full"
            else:
                self._seq += 1
                self._queue.append(_Item(self._seq, kind, stream, event_id, body, self._clock()))
                self.stats["enqueued"] += 1
                if self._thread is None:
                    self._start_locked()
                if len(self._queue) == 1 or len(self._queue) >= self._batch_size:
                    self._cond.notify_all()
                return True
            self.stats["dropped"] += 1
        self._call(self._on_drop, event, reason)
        return False

    def record_invalid(self, event: dict, error: ArgusError) -> None:
        with self._cond:
            self.stats["failed"] += 1
        self._call(self._on_error, event, error)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued before this call has been sent or given up.

        True if so, False if ``timeout`` (seconds) passed first.
        """
        if threading.current_thread() is self._thread:
            log.warning("argus_sdk: flush() called from the SDK's worker thread (in a callback); not waiting")
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._seq
            if self._done >= target:
                return True
            self._flush_to = max(self._flush_to, target)
            self._cond.notify_all()
            while self._done < target:
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            return True

    def shutdown(self, timeout: float | None = None) -> bool:
        """Refuse new events, deliver what is queued (within ``timeout``), stop the worker.

        Events still undelivered when the timeout passes are given up: each is reported to
        ``on_error`` with code ``SHUTDOWN_TIMEOUT`` and counted as failed. True if nothing was.
        """
        with self._cond:
            self._closed = True
        delivered = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if not delivered:
            self._abandon.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(None if delivered else 1.0)
        return delivered

    @property
    def queue_length(self) -> int:
        with self._cond:
            return len(self._queue)

    def wake(self) -> None:
        """Make the worker re-check its flush conditions now (tests with a fake clock use this)."""
        with self._cond:
            self._cond.notify_all()

    # ----------------------------------------------------------------------------- worker

    def _start_locked(self) -> None:
        self._thread = threading.Thread(target=self._run, name="argus-sdk-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._fetch_limits:
            self._load_limits()
        while True:
            with self._cond:
                batch = self._next_batch_locked()
            if batch is None:
                return
            try:
                self._process(batch)
            except Exception:  # a bug must not kill the worker: flush() would wait forever
                log.exception("argus_sdk: unexpected error while sending a batch")
            with self._cond:
                self._done = batch[-1].seq
                self._cond.notify_all()

    def _next_batch_locked(self) -> list[_Item] | None:
        while True:
            if not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
                continue
            if (
                len(self._queue) >= self._batch_size
                or self._stopping
                or self._abandon.is_set()
                or self._queue[0].seq <= self._flush_to
            ):
                break
            remaining = self._queue[0].enqueued_at + self._flush_interval - self._clock()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        count = min(len(self._queue), self._batch_size, self._max_items)
        return [self._queue.popleft() for _ in range(count)]

    def _load_limits(self) -> None:
        """Size requests from ``GET /limits`` (optional: 10,000 items / 5 MiB if it fails)."""
        try:
            resp = self._request("GET", "/limits", timeout=5.0)
            if resp.status != 200:
                log.debug("argus_sdk: GET /limits answered %s; using default limits", resp.status)
                return
            limits = resp.json()
            bulk = limits.get("bulk") or {}
            request = limits.get("request") or {}
            if isinstance(bulk.get("max_items"), int) and bulk["max_items"] > 0:
                self._max_items = bulk["max_items"]
            sizes = [v for v in (bulk.get("max_bytes"), request.get("max_decompressed_bytes")) if isinstance(v, int) and v > 0]
            if sizes:
                self._max_bytes = min(sizes)
            encodings = request.get("content_encodings")
            if self._gzip and isinstance(encodings, list) and "gzip" not in encodings:
                log.info("argus_sdk: the server does not accept gzip bodies; sending them uncompressed")
                self._gzip = False
        except Exception as exc:  # network error, unreadable body: the defaults stand
            log.debug("argus_sdk: GET /limits failed (%s); using default limits", exc)

    def _process(self, batch: list[_Item]) -> None:
        if self._abandon.is_set():
            self._give_up(batch)
            return
        groups: dict[tuple[str, str | None], list[_Item]] = {}
        for item in batch:
            groups.setdefault((item.kind, item.stream), []).append(item)
        for (kind, stream), items in groups.items():
            for chunk in self._chunks(items):
                self._deliver(kind, stream, chunk)

    def _chunks(self, items: list[_Item]) -> Iterator[list[_Item]]:
        """Split so that each request holds at most max_items items and max_bytes (uncompressed)."""
        budget = max(1, self._max_bytes - _ENVELOPE_BYTES)
        chunk: list[_Item] = []
        size = 0
        for item in items:
            n = len(item.body) + 1
            if chunk and (size + n > budget or len(chunk) >= self._max_items):
                yield chunk
                chunk, size = [], 0
            chunk.append(item)
            size += n
        if chunk:
            yield chunk

    def _deliver(self, kind: str, stream: str | None, items: list[_Item]) -> None:
        """Send ``items`` until each is written, permanently refused, or out of attempts."""
        pending = items
        attempt = 0
        while pending:
            if self._abandon.is_set():
                self._give_up(pending)
                return
            outcome, error, retry = self._send_once(kind, stream, pending)
            if outcome == "split":  # 413: halve the batch; a size refusal is not transient
                if len(pending) == 1:
                    self._fail(pending, error)
                    return
                mid = len(pending) // 2
                self._deliver(kind, stream, pending[:mid])
                self._deliver(kind, stream, pending[mid:])
                return
            if outcome == "nogzip":  # the server refused the gzip encoding: resend uncompressed
                continue
            if outcome == "fatal":
                self._fail(pending, error)
                return
            attempt += 1
            pending = retry
            if not pending:
                return
            if attempt >= self._max_attempts:
                self._fail(pending, error)
                return
            delay = self.backoff(attempt - 1, error.retry_after)
            with self._cond:
                self.stats["retries"] += 1
            log.debug("argus_sdk: retrying %d events in %.3fs (%s)", len(pending), delay, error)
            self._sleep(delay)

    def backoff(self, retry_index: int, retry_after: float | None = None) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**retry_index)), at least ``retry_after``."""
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** min(retry_index, 62))
        delay = self._random.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _send_once(self, kind: str, stream: str | None, items: list[_Item]) -> tuple[str, ArgusError, list[_Item]]:
        """One attempt. Returns (outcome, error, items to retry); outcome is "ok" (per-item
        results applied; ``items to retry`` are the retryable ones), "retry" (whole request),
        "split", "nogzip" or "fatal"."""
        sent_at = format_timestamp(self._now())  # the clock at this attempt
        joined = b",".join(item.body for item in items)
        if kind == ARGUS:
            body = b'{"mode":"partial","sent_at":"' + sent_at.encode() + b'","items":[' + joined + b"]}"
            path = "/batch/events"
        else:
            body = (
                b'{"stream_id":' + json.dumps(stream).encode() + b',"sent_at":"' + sent_at.encode()
                + b'","events":[' + joined + b"]}"
            )
            path = "/ingest/batch"
        query = {"validate_only": "true"} if self._validate_only else None
        gzip_used = self._gzip
        with self._cond:
            self.stats["requests"] += 1
        try:
            resp = self._request("POST", path, query=query, body=body, gzip=gzip_used)
        except Exception as exc:  # no answer: retry the whole request (same ids)
            return "retry", ArgusError.network(exc), items

        if 200 <= resp.status < 300:
            return self._apply_report(kind, stream, items, resp)
        error = ArgusError.from_response(resp.status, resp.headers, resp.body)
        if resp.status == 413:
            return "split", error, items
        if resp.status == 429 and len(items) > 1 and _exceeds_whole_quota(error):
            # More events than the hourly quota itself: no window could ever take this batch.
            return "split", error, items
        if resp.status == 415 and gzip_used and self._gzip:
            log.warning("argus_sdk: the server refused a gzip body (%s); sending uncompressed from now on", error)
            self._gzip = False
            return "nogzip", error, items
        if error.retryable:
            return "retry", error, items
        return "fatal", error, items

    def _apply_report(self, kind: str, stream: str | None, items: list[_Item], resp: Response) -> tuple[str, ArgusError, list[_Item]]:
        try:
            report = resp.json()
            results = report["results"]
            by_index = {r["index"]: r for r in results if isinstance(r, dict) and isinstance(r.get("index"), int)}
        except (ValueError, TypeError, KeyError) as exc:
            # A 2xx we cannot read: resending is safe (client ids make it idempotent).
            return "retry", ArgusError(f"unreadable bulk report: {exc}", status=resp.status, code=BAD_RESPONSE), items
        written: list[_Item] = []
        duplicates = 0
        retry: list[_Item] = []
        retry_error: ArgusError | None = None
        failed: list[tuple[_Item, ArgusError]] = []
        for index, item in enumerate(items):
            result = by_index.get(index)
            if result is None:  # no result for this item: resend it
                retry.append(item)
                retry_error = retry_error or ArgusError(f"no result for item {index}", status=resp.status, code=BAD_RESPONSE)
                continue
            status = result.get("status")
            if status in (200, 201):
                written.append(item)
                duplicates += 1 if result.get("duplicate") else 0
                continue
            err = result.get("error") if isinstance(result.get("error"), dict) else {}
            error = ArgusError(
                str(err.get("message") or f"item status {status}"),
                status=status if isinstance(status, int) else None,
                code=str(err.get("code") or f"HTTP_{status}"),
                details=err.get("details") if isinstance(err.get("details"), dict) else None,
            )
            if status == 503 or error.details.get("retryable") is True:
                retry.append(item)
                retry_error = error
            else:  # 400, 409 ID_CONFLICT, ...: permanent
                failed.append((item, error))
        with self._cond:
            self.stats["sent"] += len(written)
            self.stats["duplicates"] += duplicates
        for item, error in failed:
            self._fail([item], error)
        return "ok", retry_error or ArgusError("retry", code="RETRY_LATER"), retry

    def _fail(self, items: list[_Item], error: ArgusError) -> None:
        with self._cond:
            self.stats["failed"] += len(items)
        if self._on_error is None:
            log.warning("argus_sdk: %d event(s) not delivered: %s", len(items), error)
            return
        for item in items:
            self._call(self._on_error, self._decode(item), error)

    def _give_up(self, items: list[_Item]) -> None:
        self._fail(items, ArgusError("shutdown timed out before this event was delivered", code=SHUTDOWN_TIMEOUT))

    @staticmethod
    def _decode(item: _Item) -> dict:
        event = json.loads(item.body)
        if item.kind == INGEST:
            event["stream_id"] = item.stream
        return event

    @staticmethod
    def _call(callback: Callable[..., Any] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("argus_sdk: callback %r raised", callback)


def _exceeds_whole_quota(error: ArgusError) -> bool:
    details = error.details
    requested, value = details.get("requested"), details.get("value")
    return (
        details.get("limit") == "events_per_hour"
        and isinstance(requested, int)
        and isinstance(value, int)
        and requested > value
    )


def gzip_body(body: bytes) -> bytes:
    return _gzip.compress(body, compresslevel=6, mtime=0)
