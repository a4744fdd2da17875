"""Small helpers: ids, timestamps, JSON encoding."""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
import uuid
from typing import Any

_UTC = _dt.timezone.utc


def uuid7() -> str:
    """A UUID v7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. Time-ordered."""
    ms = time.time_ns() // 1_000_000
    raw = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7
    raw[8] = 0x80 | (raw[8] & 0x3F)  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(raw)))


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_UTC)


def format_timestamp(value: Any) -> str:
    """RFC 3339 UTC with milliseconds, as Argus stores it: ``2026-12-02T16:01:02.345Z``.

    Accepts an aware ``datetime`` (converted to UTC), a naive one (taken as UTC), a ``date``
    (midnight UTC), Unix seconds (int/float), or a string (sent as given: Argus checks it).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("timestamp must be a datetime, a string or Unix seconds, not a bool")
    if isinstance(value, (int, float)):
        value = _dt.datetime.fromtimestamp(value, _UTC)
    elif isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        value = _dt.datetime(value.year, value.month, value.day, tzinfo=_UTC)
    if not isinstance(value, _dt.datetime):
        raise TypeError(f"timestamp must be a datetime, a string or Unix seconds, not {type(value).__name__}")
    value = value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, _dt.datetime):
        return format_timestamp(value)
    if isinstance(value, _dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; NaN/Infinity refused (they are not JSON); UUIDs and datetimes as strings."""
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default
    ).encode("utf-8")
