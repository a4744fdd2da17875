#!/usr/bin/env python3
"""Local webhook receiver for the integration tests.

Verifies Argus's outgoing webhooks with an implementation Argus did not write: the Standard
Webhooks reference library (`standardwebhooks`, pinned in tools/stack/requirements-webhooks.txt).
Python 3 stdlib + standardwebhooks only.

    python tests/webhook_receiver.py [--port N] [--verbose]

Prints exactly one line, `LISTENING <port>`, to stdout once it accepts connections (port 0, the
default, lets the OS choose). Nothing else goes to stdout; `--verbose` logs requests to stderr.

Control API (JSON in, JSON out):

  PUT /_control/endpoints/<name>
      {"secrets": ["whsec_..."],
       "responses": [{"status": 500},
                     {"status": 429, "headers": {"Retry-After": "2"}},
                     {"status": 200, "delay_ms": 0, "body": "ok"}]}
      Configures endpoint <name>. Each POST to /hooks/<name> consumes the next response; once the
      list is exhausted the last one repeats. `delay_ms` sleeps before answering. "secrets"
      defaults to [], "responses" to [{"status": 200}]. A re-PUT replaces the configuration and
      restarts the sequence; the log is kept. Answers 200 {"ok": true} or 400 {"error": "..."}.

  GET /_control/log/<name>
      {"deliveries": [...]} in arrival order (every POST to /hooks/<name>, configured or not):
        received_at_ms   epoch milliseconds (float) when the request's headers had arrived
        path             the request target as sent (with any query string)
        headers          every request header, names lower-cased (duplicates joined by ", ");
                         webhook-id, webhook-timestamp, webhook-signature, content-type and
                         user-agent are always present (null when not sent)
        body             the raw body as text (UTF-8; invalid bytes replaced)
        json             the body parsed as JSON, or null
        verified         true when one of the endpoint's secrets verified the request
        verified_with    index into "secrets" of the first secret that verified, or null
        error            why verification failed (one message per secret tried), or null
        answered         the status code answered
        responded_at_ms  epoch ms when the response was written, null until then or if writing
                         failed. Not proof the client read it: after a client timeout (during
                         delay_ms) the write usually still succeeds into the socket buffer.

  POST to /hooks/<name> of an endpoint never configured: logged, answered 404.
  Any other path: 404; a known path with another method: 405.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from standardwebhooks.webhooks import Webhook

VERBOSE = False
LOCK = threading.Lock()
ENDPOINTS = {}  # name -> {"secrets": [str], "webhooks": [Webhook], "responses": [dict], "next": int}
LOGS = {}  # name -> [delivery dict]

RECORDED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent")


def now_ms():
    return time.time() * 1000.0


def parse_config(raw):
    """Validates a PUT body; returns the endpoint record or raises ValueError."""
    try:
        cfg = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError("body is not JSON: %s" % e)
    if not isinstance(cfg, dict):
        raise ValueError("body must be a JSON object")
    secrets = cfg.get("secrets", [])
    if not isinstance(secrets, list) or not all(isinstance(s, str) for s in secrets):
        raise ValueError('"secrets" must be a list of strings')
    webhooks = []
    for i, s in enumerate(secrets):
        try:
            webhooks.append(Webhook(s))
        except Exception as e:  # EmptyWebhookSecretError, binascii.Error, ...
            raise ValueError("secrets[%d] is not a usable secret: %s: %s" % (i, type(e).__name__, e))
    responses = cfg.get("responses", [{"status": 200}])
    if not isinstance(responses, list) or not responses:
        raise ValueError('"responses" must be a non-empty list')
    checked = []
    for i, r in enumerate(responses):
        if not isinstance(r, dict):
            raise ValueError("responses[%d] must be an object" % i)
        status = r.get("status", 200)
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
            raise ValueError("responses[%d].status must be an integer in 200..599" % i)
        headers = r.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("responses[%d].headers must map strings to strings" % i)
        delay_ms = r.get("delay_ms", 0)
        if not isinstance(delay_ms, (int, float)) or isinstance(delay_ms, bool) or delay_ms < 0:
            raise ValueError("responses[%d].delay_ms must be a number >= 0" % i)
        body = r.get("body", "")
        if not isinstance(body, str):
            raise ValueError("responses[%d].body must be a string" % i)
        checked.append({"status": status, "headers": headers, "delay_ms": delay_ms, "body": body})
    return {"secrets": secrets, "webhooks": webhooks, "responses": checked, "next": 0}


def verify(webhooks, raw_body, headers):
    """Returns (verified_with, error): the first secret index that verifies, or None and why not."""
    if not webhooks:
        return None, "no secrets configured"
    errors = []
    for i, wh in enumerate(webhooks):
        try:
            # The library lower-cases header names, checks the timestamp against its default
            # tolerance (5 minutes), and accepts any of the space-separated v1 signatures.
            # json_parse=False: verification only (a non-JSON body must not read as a bad signature).
            wh.verify(raw_body, headers, json_parse=False)
            return i, None
        except Exception as e:  # WebhookVerificationError; ValueError etc. on malformed headers
            errors.append("secrets[%d]: %s: %s" % (i, type(e).__name__, e))
    return None, "; ".join(errors)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def version_string(self):
        return "argus-webhook-receiver/1"

    def log_message(self, fmt, *args):
        if VERBOSE:
            sys.stderr.write("webhook_receiver: %s - %s\n" % (self.address_string(), fmt % args))

    # --- plumbing ---------------------------------------------------------------------------

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(self, status, body=b"", content_type="text/plain; charset=utf-8", headers=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status in (204, 304):
            body = b""
        else:
            if body and not any(k.lower() == "content-type" for k in (headers or {})):
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status, obj):
        self.send(status, json.dumps(obj), content_type="application/json")

    def route(self):
        """(kind, name) for known paths, else (None, None)."""
        parts = urlsplit(self.path).path.split("/")
        if len(parts) == 3 and parts[1] == "hooks" and parts[2]:
            return "hooks", unquote(parts[2])
        if len(parts) == 4 and parts[1] == "_control" and parts[3]:
            if parts[2] == "endpoints":
                return "endpoints", unquote(parts[3])
            if parts[2] == "log":
                return "log", unquote(parts[3])
        return None, None

    def dispatch(self, method):
        received_at_ms = now_ms()
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self.send(400, "bad body framing")
            return
        kind, name = self.route()
        allowed = {"hooks": "POST", "endpoints": "PUT", "log": "GET"}
        if kind is None:
            self.send(404, "not found")
        elif allowed[kind] != method:
            self.send(405, "method not allowed", headers={"Allow": allowed[kind]})
        elif kind == "endpoints":
            try:
                cfg = parse_config(body)
            except ValueError as e:
                self.send_json(400, {"error": str(e)})
                return
            with LOCK:
                ENDPOINTS[name] = cfg
                LOGS.setdefault(name, [])
            self.send_json(200, {"ok": True})
        elif kind == "log":
            with LOCK:
                deliveries = [dict(d) for d in LOGS.get(name, [])]
            self.send_json(200, {"deliveries": deliveries})
        else:
            self.deliver(name, body, received_at_ms)

    def deliver(self, name, raw_body, received_at_ms):
        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        recorded = dict(headers)
        for k in RECORDED_HEADERS:
            recorded.setdefault(k, None)
        text = raw_body.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(raw_body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            parsed = None

        with LOCK:
            cfg = ENDPOINTS.get(name)
            if cfg is None:
                response = {"status": 404, "headers": {}, "delay_ms": 0, "body": "endpoint not configured"}
                webhooks = None
            else:
                responses = cfg["responses"]
                response = responses[min(cfg["next"], len(responses) - 1)]
                cfg["next"] += 1
                webhooks = cfg["webhooks"]

        if webhooks is None:
            verified_with, error = None, "endpoint not configured"
        else:
            verified_with, error = verify(webhooks, raw_body, headers)

        entry = {
            "received_at_ms": received_at_ms,
            "path": self.path,
            "headers": recorded,
            "body": text,
            "json": parsed,
            "verified": verified_with is not None,
            "verified_with": verified_with,
            "error": error,
            "answered": response["status"],
            "responded_at_ms": None,
        }
        with LOCK:
            log = LOGS.setdefault(name, [])
            # Arrival order: concurrent requests may reach this point out of order.
            pos = len(log)
            while pos > 0 and log[pos - 1]["received_at_ms"] > received_at_ms:
                pos -= 1
            log.insert(pos, entry)

        if response["delay_ms"]:
            time.sleep(response["delay_ms"] / 1000.0)
        try:
            self.send(response["status"], response["body"], headers=response["headers"])
        except OSError:  # the client gave up (its timeout) while we slept
            self.close_connection = True
            return
        with LOCK:
            entry["responded_at_ms"] = now_ms()

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_GET(self):
        self.dispatch("GET")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_HEAD(self):
        self.send(404)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        if VERBOSE:
            super().handle_error(request, client_address)


def main():
    global VERBOSE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: the OS chooses)")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args()
    VERBOSE = args.verbose
    server = Server(("127.0.0.1", args.port), Handler)
    sys.stdout.write("LISTENING %d\n" % server.server_address[1])
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
