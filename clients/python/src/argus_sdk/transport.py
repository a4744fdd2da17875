"""HTTP transport: the interface the client talks to, and its urllib implementation.

A transport sends one request and returns the answer, whatever its status; it raises
:class:`TransportError` only when there is no answer (connection refused or reset, DNS,
timeout). Tests replace it with a fake (``tests/fakes.py``).
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol


class TransportError(Exception):
    """No HTTP answer was received (the request may or may not have reached the server)."""


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Transport(Protocol):
    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> Response: ...


def _lower_headers(items: Any) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _decode_body(headers: Mapping[str, str], body: bytes) -> bytes:
    if body and headers.get("content-encoding", "").lower() == "gzip":
        try:
            return gzip.decompress(body)
        except (OSError, EOFError):
            return body
    return body


class UrllibTransport:
    """The default transport: ``urllib.request`` (standard library; honours the usual proxy variables)."""

    def __init__(self, opener: urllib.request.OpenerDirector | None = None) -> None:
        self._opener = opener or urllib.request.build_opener()

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> Response:
        req = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                resp_headers = _lower_headers(resp.headers.items())
                data = resp.read()
                return Response(resp.status, resp_headers, _decode_body(resp_headers, data))
        except urllib.error.HTTPError as err:  # a non-2xx answer is still an answer
            resp_headers = _lower_headers(err.headers.items()) if err.headers else {}
            try:
                data = err.read()
            except (OSError, http.client.HTTPException):
                data = b""
            finally:
                err.close()
            return Response(err.code, resp_headers, _decode_body(resp_headers, data))
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, OSError) as err:
            raise TransportError(f"{method} {url}: {getattr(err, 'reason', err)}") from err
