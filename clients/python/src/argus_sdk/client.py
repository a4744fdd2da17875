"""The Argus client: synchronous calls, and non-blocking ``track()`` / ``ingest.send_event()``."""

from __future__ import annotations

import atexit
import datetime as _dt
import os
import random as _random
import urllib.parse
from typing import Any, Callable, Iterable, Iterator, Mapping

from . import __version__
from ._util import encode_json, format_timestamp, uuid7
from .batcher import ARGUS, INGEST, Batcher, gzip_body
from .errors import BAD_RESPONSE, INVALID_EVENT, ArgusError
from .transport import Response, Transport, UrllibTransport

OnError = Callable[[dict, ArgusError], Any]
OnDrop = Callable[[dict, str], Any]

_RATE_LIMIT_HEADERS = {
    "ratelimit-limit": "limit",
    "ratelimit-remaining": "remaining",
    "ratelimit-reset": "reset",
    "argus-events-limit": "events_limit",
    "argus-events-remaining": "events_remaining",
}


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (_dt.datetime, _dt.date)):
        return format_timestamp(value)
    return str(value)


def _segment(value: Any) -> str:
    return urllib.parse.quote(str(value), safe="")


class Client:
    """A client for one Argus API (base URL) and one credential.

    ``base_url`` and ``api_key`` default to the environment variables ``ARGUS_URL`` and
    ``ARGUS_API_KEY``. ``bearer_token`` sends ``Authorization: Bearer <token>`` instead of a key.
    See README.md for every option.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        bearer_token: str | None = None,
        batch_size: int = 500,
        flush_interval: float = 5.0,
        max_queue_size: int = 10_000,
        max_attempts: int = 8,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        gzip: bool = True,
        timeout: float = 30.0,
        fetch_limits: bool = True,
        validate_only: bool = False,
        on_error: OnError | None = None,
        on_drop: OnDrop | None = None,
        shutdown_timeout: float | None = 10.0,
        register_atexit: bool = True,
        transport: Transport | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Any] | None = None,
        random: _random.Random | None = None,
        now: Callable[[], _dt.datetime] | None = None,
    ) -> None:
        base_url = base_url or os.environ.get("ARGUS_URL")
        if not base_url:
            raise ValueError("no base URL: pass base_url= or set ARGUS_URL")
        scheme = urllib.parse.urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        api_key = api_key or (None if bearer_token else os.environ.get("ARGUS_API_KEY"))
        if not api_key and not bearer_token:
            raise ValueError("no credential: pass api_key= (or set ARGUS_API_KEY) or bearer_token=")
        self.base_url = base_url.rstrip("/")
        self._auth = {"x-api-key": api_key} if api_key else {"Authorization": f"Bearer {bearer_token}"}
        self._timeout = timeout
        self._transport: Transport = transport or UrllibTransport()
        self._shutdown_timeout = shutdown_timeout
        self._user_agent = f"argus-sdk-python/{__version__}"
        self.rate_limit: dict[str, int] | None = None
        self._batcher = Batcher(
            self._request,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            gzip=gzip,
            fetch_limits=fetch_limits,
            validate_only=validate_only,
            on_error=on_error,
            on_drop=on_drop,
            clock=clock,
            sleep=sleep,
            random=random,
            now=now,
        )
        self._now = now
        self.ingest = Ingest(self)
        self._atexit_registered = register_atexit
        if register_atexit:
            atexit.register(self._shutdown_at_exit)

    # ------------------------------------------------------------------ queued ingestion

    def track(
        self,
        session_id: Any,
        category: str,
        name: str,
        data: Mapping[str, Any],
        stream: str | None = None,
        timestamp: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Queue one event for ``POST /batch/events``; never blocks on the network, never raises.

        Returns the event's id (a UUID v7 chosen now, sent unchanged on every retry), or None if
        the event was not queued: the queue was full or the client shut down (``on_drop`` is
        called, ``dropped`` counts it), or it is not JSON (``on_error`` is called with code
        ``INVALID_EVENT``, ``failed`` counts it). ``timestamp`` defaults to now.
        """
        event: dict[str, Any] = {}
        try:
            event_id = uuid7()
            event = {
                "id": event_id,
                "session_id": session_id,
                "category": category,
                "name": name,
                "data": data,
                "timestamp": self._timestamp(timestamp),
            }
            if stream is not None:
                event["stream"] = stream
            if metadata is not None:
                event["metadata"] = metadata
            body = encode_json(event)
        except Exception as exc:
            self._batcher.record_invalid(event, ArgusError(f"event not queued: {exc}", code=INVALID_EVENT))
            return None
        return event_id if self._batcher.enqueue(ARGUS, None, event_id, body, event) else None

    def _timestamp(self, value: Any) -> str:
        if value is None:
            return format_timestamp(self._now() if self._now else _dt.datetime.now(_dt.timezone.utc))
        return format_timestamp(value)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far and wait for it (sent or given up).

        True when done; False if ``timeout`` seconds passed first (sending goes on).
        """
        return self._batcher.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the worker. Afterwards ``track``/``send_event`` drop (reason ``"closed"``).

        With a ``timeout``, events still undelivered when it passes are given up (``on_error``
        with code ``SHUTDOWN_TIMEOUT``). Returns True if everything queued was delivered or
        refused by the server in time. Safe to call twice.
        """
        if self._atexit_registered:
            atexit.unregister(self._shutdown_at_exit)
            self._atexit_registered = False
        return self._batcher.shutdown(timeout)

    close = shutdown

    def _shutdown_at_exit(self) -> None:
        self._batcher.shutdown(self._shutdown_timeout)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown(self._shutdown_timeout)

    # Counters (since the client was created).
    @property
    def sent(self) -> int:
        """Events the server stored (201) or already had (200 duplicate)."""
        return self._batcher.stats["sent"]

    @property
    def failed(self) -> int:
        """Events given up: refused (400, 409, ...), out of attempts, invalid, or shutdown timeout."""
        return self._batcher.stats["failed"]

    @property
    def dropped(self) -> int:
        """Events not queued: queue full or client shut down."""
        return self._batcher.stats["dropped"]

    @property
    def queued(self) -> int:
        """Events waiting in the queue now (not counting a batch being sent)."""
        return self._batcher.queue_length

    def stats(self) -> dict[str, int]:
        """All counters: enqueued, sent, duplicates, failed, dropped, retries, requests, queued."""
        return {**self._batcher.stats, "queued": self._batcher.queue_length}

    # ------------------------------------------------------------------ HTTP plumbing

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        gzip: bool = False,
        timeout: float | None = None,
    ) -> Response:
        url = self.base_url + path
        params = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json", "User-Agent": self._user_agent, **self._auth}
        if body is not None:
            headers["Content-Type"] = "application/json"
            if gzip:
                body = gzip_body(body)
                headers["Content-Encoding"] = "gzip"
        resp = self._transport.request(method, url, headers, body, self._timeout if timeout is None else timeout)
        self._note_rate_limit(resp.headers)
        return resp

    def _note_rate_limit(self, headers: Mapping[str, str]) -> None:
        seen = {}
        for header, key in _RATE_LIMIT_HEADERS.items():
            value = headers.get(header)
            if value is not None:
                try:
                    seen[key] = int(value)
                except ValueError:
                    pass
        if seen:
            self.rate_limit = seen

    def _call(self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        """One synchronous request: the parsed JSON answer, or ArgusError."""
        payload = None if body is None else encode_json(body)
        try:
            resp = self._request(method, path, query=query, body=payload)
        except Exception as exc:
            raise ArgusError.network(exc) from exc
        if 200 <= resp.status < 300:
            try:
                return resp.json()
            except ValueError as exc:
                raise ArgusError(f"unreadable answer: {exc}", status=resp.status, code=BAD_RESPONSE) from exc
        raise ArgusError.from_response(resp.status, resp.headers, resp.body)

    def _pages(self, path: str, query: dict[str, Any], items_key: str) -> Iterator[Any]:
        """Every item of a listing, following ``next_cursor`` until it is null."""
        query = dict(query)
        while True:
            page = self._call("GET", path, query)
            yield from page.get(items_key) or []
            cursor = page.get("next_cursor")
            if not cursor:
                return
            query["cursor"] = cursor
            query.pop("offset", None)

    # ------------------------------------------------------------------ synchronous calls

    def create_session(self, metadata: Mapping[str, Any] | None = None) -> dict:
        """``POST /sessions`` → ``{"id", "created_at", ...}``."""
        return self._call("POST", "/sessions", body={} if metadata is None else {"metadata": metadata})

    def get_session(self, session_id: Any) -> dict:
        return self._call("GET", f"/sessions/{_segment(session_id)}")

    def list_sessions(self, limit: int | None = None, cursor: str | None = None) -> dict:
        """One page: ``{"items": [...], "next_cursor": str | None}``, newest first."""
        return self._call("GET", "/sessions", {"limit": limit, "cursor": cursor})

    def iter_sessions(self, limit: int | None = None) -> Iterator[dict]:
        """Every session, page after page (``limit`` is the page size)."""
        return self._pages("/sessions", {"limit": limit}, "items")

    def _event_filters(self, **filters: Any) -> dict[str, Any]:
        return {
            "session": filters.get("session_id"),  # Argus's query parameter is `session`
            "category": filters.get("category"),
            "name": filters.get("name"),
            "stream": filters.get("stream"),
            "timestamp__gte": filters.get("timestamp_gte"),
            "timestamp__lte": filters.get("timestamp_lte"),
            "include_deleted": filters.get("include_deleted"),
            "limit": filters.get("limit"),
        }

    def list_events(
        self,
        session_id: Any = None,
        category: str | None = None,
        name: str | None = None,
        stream: str | None = None,
        timestamp_gte: Any = None,
        timestamp_lte: Any = None,
        include_deleted: bool | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict:
        """One page of ``GET /events`` (newest ``timestamp`` first): ``{"items", "next_cursor"}``.

        A page may hold fewer than ``limit`` items, even none, and still have a cursor.
        """
        query = self._event_filters(
            session_id=session_id, category=category, name=name, stream=stream, timestamp_gte=timestamp_gte,
            timestamp_lte=timestamp_lte, include_deleted=include_deleted, limit=limit,
        )
        query["cursor"] = cursor
        return self._call("GET", "/events", query)

    def iter_events(
        self,
        session_id: Any = None,
        category: str | None = None,
        name: str | None = None,
        stream: str | None = None,
        timestamp_gte: Any = None,
        timestamp_lte: Any = None,
        include_deleted: bool | None = None,
        limit: int | None = None,
    ) -> Iterator[dict]:
        """Every event matching the filters, following ``next_cursor`` until it is null."""
        query = self._event_filters(
            session_id=session_id, category=category, name=name, stream=stream, timestamp_gte=timestamp_gte,
            timestamp_lte=timestamp_lte, include_deleted=include_deleted, limit=limit,
        )
        return self._pages("/events", query, "items")

    def get_event(self, event_id: Any, include_deleted: bool | None = None) -> dict:
        return self._call("GET", f"/events/{_segment(event_id)}", {"include_deleted": include_deleted})

    def query_events(
        self,
        stream_id: str,
        start_time: Any = None,
        end_time: Any = None,
        event_type: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> dict:
        """``GET /query/events``: ``{"events", "total_count", "has_more", "next_cursor"}``, newest first.

        The window is ``[start_time, end_time)``. Page with ``offset`` (up to 10,000) or
        ``cursor`` (the previous page's ``next_cursor``), not both.
        """
        return self._call(
            "GET",
            "/query/events",
            {"stream_id": stream_id, "start_time": start_time, "end_time": end_time, "event_type": event_type,
             "limit": limit, "offset": offset, "cursor": cursor},
        )

    def iter_query_events(
        self,
        stream_id: str,
        start_time: Any = None,
        end_time: Any = None,
        event_type: str | None = None,
        limit: int | None = None,
    ) -> Iterator[dict]:
        """Every event of ``query_events``'s window, following ``next_cursor`` until it is null."""
        query = {"stream_id": stream_id, "start_time": start_time, "end_time": end_time, "event_type": event_type, "limit": limit}
        return self._pages("/query/events", query, "events")

    def aggregate(
        self,
        stream_id: str,
        start: Any,
        end: Any,
        aggregations: Iterable[Mapping[str, Any] | tuple[str, str]],
        group_by: str | None = None,
        interval: str | None = None,
    ) -> dict:
        """``POST /query/aggregate`` over ``[start, end)``.

        ``aggregations``: dicts ``{"field", "operation"}`` or ``(field, operation)`` pairs, e.g.
        ``[("*", "count"), ("data.amount", "sum")]``. ``group_by``: ``event_type``, ``category``,
        ``session_id`` or a ``data.`` path. ``interval``: ``minute``, ``hour`` or ``day``.
        """
        body: dict[str, Any] = {
            "stream_id": stream_id,
            "time_window": {"start": format_timestamp(start), "end": format_timestamp(end)},
            "aggregations": [
                dict(a) if isinstance(a, Mapping) else {"field": a[0], "operation": a[1]} for a in aggregations
            ],
        }
        if group_by is not None:
            body["group_by"] = group_by
        if interval is not None:
            body["interval"] = interval
        return self._call("POST", "/query/aggregate", body=body)

    def stream_status(self, stream_id: str) -> dict:
        """``GET /streams/{id}/status``."""
        return self._call("GET", f"/streams/{_segment(stream_id)}/status")

    def get_limits(self) -> dict:
        """``GET /limits``: bulk sizes, request limits and the caller's rate limits."""
        return self._call("GET", "/limits")


class Ingest:
    """DataStream Pro's surface: ``client.ingest.send_event(...)``, batched through ``POST /ingest/batch``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def send_event(
        self,
        stream_id: str,
        event_type: str,
        data: Mapping[str, Any],
        timestamp: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Queue one DataStream event; never blocks on the network, never raises.

        Returns its ``event_id`` (chosen now, the same on every retry), or None when it was
        dropped or invalid (as ``Client.track``). ``timestamp`` defaults to now: Argus requires
        one with a client ``event_id``, so that a retry is the same event.
        """
        client = self._client
        event: dict[str, Any] = {}
        try:
            event_id = uuid7()
            event = {
                "event_id": event_id,
                "event_type": event_type,
                "timestamp": client._timestamp(timestamp),
                "data": data,
            }
            if metadata is not None:
                event["metadata"] = metadata
            body = encode_json(event)
            if not isinstance(stream_id, str):
                raise TypeError(f"stream_id must be a string, not {type(stream_id).__name__}")
        except Exception as exc:
            event["stream_id"] = stream_id
            client._batcher.record_invalid(event, ArgusError(f"event not queued: {exc}", code=INVALID_EVENT))
            return None
        ok = client._batcher.enqueue(INGEST, stream_id, event_id, body, {**event, "stream_id": stream_id})
        return event_id if ok else None
