"""The one exception type of the SDK."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any, Mapping

# Codes the SDK itself uses (the server's codes are UPPER_SNAKE strings too).
NETWORK_ERROR = "NETWORK_ERROR"  # no HTTP answer: connection refused/reset, DNS, timeout
BAD_RESPONSE = "BAD_RESPONSE"  # an answer the SDK cannot read
INVALID_EVENT = "INVALID_EVENT"  # track()/send_event() got something that is not JSON
SHUTDOWN_TIMEOUT = "SHUTDOWN_TIMEOUT"  # shutdown() gave up on events it could not deliver in time


class ArgusError(Exception):
    """An error answer from Argus, or a failure to get one.

    ``status`` is the HTTP status (``None`` when there was no answer, e.g. a network error);
    ``code``, ``message`` and ``details`` come from Argus's envelope
    ``{"error": {"code", "message", "details"}}``. ``retry_after`` is the wait in seconds the
    server asked for (``Retry-After``, or ``details.reset_seconds`` of a 429), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "ERROR",
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.headers: dict[str, str] = dict(headers or {})
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again may succeed."""
        if self.code == NETWORK_ERROR or self.code == BAD_RESPONSE:
            return True
        if self.details.get("retryable") is True:
            return True
        return self.status is not None and (self.status in (408, 429) or self.status >= 500)

    def __str__(self) -> str:
        status = self.status if self.status is not None else "-"
        return f"{status} {self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"ArgusError(status={self.status!r}, code={self.code!r}, message={self.message!r}, details={self.details!r})"

    @classmethod
    def from_response(cls, status: int, headers: Mapping[str, str], body: bytes) -> "ArgusError":
        """Build the error for a non-2xx answer (Argus's envelope or API Gateway's ``{"message"}``)."""
        code, message, details = f"HTTP_{status}", f"HTTP {status}", {}
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            error = parsed.get("error")
            if isinstance(error, dict):
                code = str(error.get("code") or code)
                message = str(error.get("message") or message)
                if isinstance(error.get("details"), dict):
                    details = error["details"]
            elif isinstance(parsed.get("message"), str):
                # API Gateway's own answers: {"message": "Unauthorized"} and the like.
                message = parsed["message"]
                code = message.upper().replace(" ", "_") if message else code
        elif body:
            message = body[:200].decode("utf-8", "replace")
        retry_after = parse_retry_after(headers.get("retry-after"))
        if retry_after is None and status == 429:
            reset = details.get("reset_seconds")
            if isinstance(reset, (int, float)) and not isinstance(reset, bool) and reset >= 0:
                retry_after = float(reset)
        return cls(message, status=status, code=code, details=details, headers=headers, retry_after=retry_after)

    @classmethod
    def network(cls, exc: BaseException) -> "ArgusError":
        error = cls(f"{type(exc).__name__}: {exc}", code=NETWORK_ERROR)
        error.__cause__ = exc
        return error


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)
