"""schemathesis hooks for scripts/fuzz.sh.

Two jobs:
- drop a "schema-valid request rejected" (or "created resource not found") failure when the
  rejection rests on a rule that JSON Schema cannot state, so the spec cannot tell the fuzzer.
  Each rule below names the exact error code (and field codes) it accepts; any other rejection
  of schema-valid data still fails the run. The summary counts what was dropped
  ("dropped by `filter_failure`");
- keep the fuzz stack's webhooks off the internet: its notifier really delivers (test sends,
  completed jobs, processing errors), so a webhook URL the fuzzer generates is pointed at a name
  that never resolves before it is sent (`before_call`).
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import schemathesis
import yaml
from schemathesis.openapi.checks import EnsureResourceAvailability, RejectedPositiveData, UseAfterFree

# Every cursor the API handed out in this run: only those are valid cursors. A cursor is opaque
# (a check value over its listing and position), so any other string is rightly a 400.
_ISSUED_CURSORS: set[str] = set()
_LOCK = threading.Lock()

# Field codes that depend on state or on the clock, not on the request's shape:
VALIDATE_ONLY_CODES = {"DATA_NOT_OBJECT", "DATA_EMPTY"}

STATE_FIELD_CODES = {
    "SESSION_NOT_FOUND",  # the session must exist in the tenant
    "TIMESTAMP_IN_FUTURE",  # at most 60 s after now
    "TIMESTAMP_BEYOND_RETENTION",  # within the stream's retention_days before now
    "ID_CONFLICT",  # the id is taken by another event
    "NOT_FOUND",  # (atomic bulk update) the event must exist
    "DUPLICATE_ID",  # unique by a property across items: no JSON Schema keyword says so
    "TOO_LARGE",  # serialized size in bytes (stored event, session metadata)
    "TOO_DEEP",  # nesting depth of any JSON value
    "INVALID_RANGE",  # timestamp__gte after timestamp__lte: a relation between two parameters
    "WINDOW_END_BEFORE_START",  # a window's end after its start: a relation between two fields
    "WINDOW_TOO_LARGE",  # a window's length (end - start) in days
    "TOO_MANY_BUCKETS",
    "INVALID_SENT_AT",  # sent_at and timestamp together move the corrected timestamp out of range  # the window's length divided by the interval
    "OFFSET_WITH_CURSOR",  # offset and cursor are exclusive: a relation between two parameters
    "FIELD_NOT_NUMERIC",  # (aggregate) a stored event's value at the path is not a number
    "TOO_MANY_GROUPS",  # distinct values stored in the window
    "TOO_MANY_ROWS",  # groups × intervals stored in the window
    "ANSWER_TOO_LARGE",  # the size of the answer those rows make
}

# INVALID_BATCH answers about how sub-requests refer to each other (details.field, message start).
BATCH_CROSS_REFERENCES = ("depends_on names unknown request", "depends_on forms a cycle", "duplicate id", "reference to ")


def _json(response: Any) -> Any:
    try:
        return response.json()
    except Exception:
        return None


# Webhook URLs of the form docs/openapi.yaml gives (`WebhookUrl`: an https URL to a DNS name) get
# the reserved top-level domain `.invalid` (RFC 6761: never resolves) in place of theirs, so no
# fuzz run posts to a host that happens to exist. The result has the same form, so a case stays
# what it was (valid or invalid); a URL the rewrite would take past the 2,048-byte maximum is
# left as it is.
_SPEC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
_WEBHOOK_URL = re.compile(
    yaml.safe_load(_SPEC.read_text(encoding="utf-8"))["components"]["schemas"]["WebhookUrl"]["pattern"]
)
_WEBHOOK_URL_MAX_BYTES = 2048
_WEBHOOK_URL_OPERATIONS = {("POST", "/webhooks"), ("PATCH", "/webhooks/{id}")}


def _unresolvable(url: str) -> str:
    if len(url.encode()) > _WEBHOOK_URL_MAX_BYTES or not _WEBHOOK_URL.fullmatch(url):
        return url
    rest = url[len("https://") :]
    end = min((i for i in (rest.find(c) for c in ":/?") if i >= 0), default=len(rest))
    host = rest[:end]
    if host.lower().endswith(".invalid"):
        return url
    for tld in ("invalid", "test"):  # `.test` (also RFC 6761) when `.invalid` would not fit
        changed = "https://" + host[: host.rindex(".") + 1] + tld + rest[end:]
        if len(changed.encode()) <= _WEBHOOK_URL_MAX_BYTES:
            return changed
    return url


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    body = case.body
    if (case.method.upper(), case.path) in _WEBHOOK_URL_OPERATIONS and isinstance(body, dict):
        if isinstance(body.get("url"), str):
            body["url"] = _unresolvable(body["url"])


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    body = _json(response)
    if isinstance(body, dict) and isinstance(body.get("next_cursor"), str):
        with _LOCK:
            _ISSUED_CURSORS.add(body["next_cursor"])


def _field_codes(details: Any) -> list[str]:
    """Every field code in an envelope's details, atomic bulk failures included."""
    codes: list[str] = []
    if not isinstance(details, dict):
        return codes
    for field in details.get("fields") or []:
        if isinstance(field, dict):
            codes.append(str(field.get("code")))
    for failure in details.get("failures") or []:
        error = failure.get("error") if isinstance(failure, dict) else None
        if not isinstance(error, dict):
            codes.append("?")
            continue
        nested = _field_codes(error.get("details"))
        codes.extend(nested if nested else [str(error.get("code"))])
    return codes


def _inexpressible(case: Any, response: Any) -> bool:
    """Whether a rejection of schema-valid data rests only on rules a schema cannot state."""
    body = _json(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    code, details = error.get("code"), error.get("details") or {}
    status = response.status_code
    if status == 400 and code == "INVALID_CURSOR":
        cursor = (case.query or {}).get("cursor")
        with _LOCK:
            return isinstance(cursor, str) and cursor not in _ISSUED_CURSORS
    if status == 400 and code in ("VALIDATION_FAILED", "INVALID_FILTER", "ITEMS_NOT_FOUND"):
        codes = _field_codes(details)
        # A dry run (?validate_only=true) applies the content rules a normal call leaves to the
        # processor: `data` a non-empty object. The body schema cannot depend on a parameter.
        allowed = STATE_FIELD_CODES | (VALIDATE_ONLY_CODES if (case.query or {}).get("validate_only") == "true" else set())
        return bool(codes) and all(c in allowed for c in codes)
    if status == 400 and code == "INVALID_BATCH":
        return str(error.get("message", "")).startswith(BATCH_CROSS_REFERENCES)
    # How many events the stored window holds, against the raw-fold cap.
    if status == 400 and code == "WINDOW_TOO_LARGE_FOR_RAW":
        return True
    # The reads of all GET sub-requests together (a sum over array items).
    if status == 413 and code == "BATCH_TOO_COSTLY":
        return True
    return False


def _drop(failure: Any, case: Any, response: Any) -> bool:
    """Records a dropped failure (one JSON line in $ARGUS_FUZZ_DROPPED_LOG) and drops it."""
    path = os.environ.get("ARGUS_FUZZ_DROPPED_LOG")
    if path:
        line = {
            "check": type(failure).__name__,
            "operation": f"{case.method} {case.path}",
            "status": response.status_code,
            "answer": response.text[:400],
        }
        with _LOCK, open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")
    return False


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    if isinstance(failure, RejectedPositiveData) and _inexpressible(case, response):
        return _drop(failure, case, response)
    # A soft-deleted event is readable with include_deleted=true, as documented (GET /events/{id}
    # and the DELETE's GetDeletedEvent link): that is not a deleted resource still served.
    if isinstance(failure, UseAfterFree) and str((case.query or {}).get("include_deleted")) in ("true", "1"):
        return _drop(failure, case, response)
    # 202 from POST /events means queued: the processor stores the event a moment later.
    if isinstance(failure, EnsureResourceAvailability) and failure.created_with == "POST /events":
        return _drop(failure, case, response)
    return True
