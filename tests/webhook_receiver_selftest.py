#!/usr/bin/env python3
"""Self-test for tests/webhook_receiver.py. Run with the webhooks venv's Python:

    .venv-webhooks/bin/python tests/webhook_receiver_selftest.py

Starts the receiver, signs requests itself with standardwebhooks and checks what it logs.
"""

import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

from standardwebhooks.webhooks import Webhook

HERE = os.path.dirname(os.path.abspath(__file__))


def new_secret():
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def request(base, method, path, body=None, headers=None, timeout=10):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def signed_headers(secrets, msg_id, payload, ts=None):
    ts = ts or datetime.now(tz=timezone.utc)
    sigs = " ".join(Webhook(s).sign(msg_id, ts, payload) for s in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(ts.timestamp())),
        "webhook-signature": sigs,
        "content-type": "application/json",
        "user-agent": "selftest",
    }


def log_of(base, name):
    status, _, body = request(base, "GET", "/_control/log/" + name)
    assert status == 200, status
    return json.loads(body)["deliveries"]


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok   " + what)


def main():
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "webhook_receiver.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        check(line.startswith("LISTENING "), "receiver printed %r" % line.strip())
        base = "http://127.0.0.1:%d" % int(line.split()[1])

        secret = new_secret()
        status, _, _ = request(base, "PUT", "/_control/endpoints/a", {
            "secrets": [secret],
            "responses": [{"status": 500}, {"status": 200, "body": "ok"}],
        })
        check(status == 200, "PUT endpoint a")

        # 1. a correctly signed delivery verifies with secret 0; the first answer is 500
        payload = json.dumps({"type": "test.event", "data": {"n": 1}})
        status, _, _ = request(base, "POST", "/hooks/a", payload.encode(),
                               signed_headers([secret], "msg_1", payload))
        d = log_of(base, "a")
        check(status == 500 and d[0]["answered"] == 500, "1st POST answered 500")
        check(d[0]["verified"] is True and d[0]["verified_with"] == 0 and d[0]["error"] is None,
              "signed payload verified with secret 0")
        check(d[0]["json"] == {"type": "test.event", "data": {"n": 1}} and d[0]["body"] == payload,
              "body and json recorded")
        check(d[0]["headers"]["webhook-id"] == "msg_1" and d[0]["headers"]["user-agent"] == "selftest",
              "headers recorded lower-cased")

        # 2. tampered body fails; sequence moves on to 200
        hdrs = signed_headers([secret], "msg_2", payload)
        status, _, body = request(base, "POST", "/hooks/a", payload.replace("1", "2").encode(), hdrs)
        d = log_of(base, "a")
        check(status == 200 and body == b"ok", "2nd POST answered 200 'ok'")
        check(d[1]["verified"] is False and d[1]["verified_with"] is None and d[1]["error"],
              "tampered body rejected: %s" % d[1]["error"])

        # 3. last response repeats
        status, _, _ = request(base, "POST", "/hooks/a", payload.encode(),
                               signed_headers([secret], "msg_3", payload))
        check(status == 200 and len(log_of(base, "a")) == 3, "3rd POST answered 200 (last repeats)")

        # 4. old timestamp rejected by the library's default tolerance
        old = datetime.now(tz=timezone.utc) - timedelta(minutes=10)
        request(base, "POST", "/hooks/a", payload.encode(), signed_headers([secret], "msg_4", payload, old))
        d = log_of(base, "a")[-1]
        check(not d["verified"] and "too old" in d["error"], "stale timestamp rejected: %s" % d["error"])

        # 5. rotation: "v1,<old> v1,<new>" verifies against each secret alone
        old_s, new_s = new_secret(), new_secret()
        hdrs = signed_headers([old_s, new_s], "msg_5", payload)
        check(len(hdrs["webhook-signature"].split(" ")) == 2, "rotation header carries 2 signatures")
        for name, secrets, want in (("old", [old_s], 0), ("new", [new_s], 0),
                                    ("both", [new_secret(), new_s], 1)):
            request(base, "PUT", "/_control/endpoints/" + name, {"secrets": secrets})
            status, _, _ = request(base, "POST", "/hooks/" + name, payload.encode(), hdrs)
            d = log_of(base, name)[0]
            check(status == 200 and d["verified"] and d["verified_with"] == want,
                  "rotation header verifies against %s secret (index %d)" % (name, want))
        request(base, "PUT", "/_control/endpoints/other", {"secrets": [new_secret()]})
        request(base, "POST", "/hooks/other", payload.encode(), hdrs)
        check(not log_of(base, "other")[0]["verified"], "rotation header fails against an unrelated secret")

        # 6. unconfigured endpoint and unknown path -> 404
        status, _, _ = request(base, "POST", "/hooks/nobody", payload.encode(), hdrs)
        check(status == 404 and log_of(base, "nobody")[0]["answered"] == 404, "unconfigured endpoint 404 (logged)")
        check(request(base, "GET", "/nope")[0] == 404, "unknown path 404")

        # 7. delay_ms: one request sleeps while others are answered; re-PUT resets sequence, keeps log
        request(base, "PUT", "/_control/endpoints/slow", {
            "secrets": [secret], "responses": [{"status": 200, "delay_ms": 1500}, {"status": 202}]})
        t = threading.Thread(target=request, args=(base, "POST", "/hooks/slow", payload.encode(),
                                                   signed_headers([secret], "msg_7", payload)))
        t0 = time.time()
        t.start()
        time.sleep(0.2)
        status, _, _ = request(base, "POST", "/hooks/slow", payload.encode(),
                               signed_headers([secret], "msg_8", payload))
        check(status == 202 and time.time() - t0 < 1.0, "server answers while another request sleeps")
        t.join()
        check(time.time() - t0 >= 1.5, "delay_ms honoured")
        d = log_of(base, "slow")
        check([x["headers"]["webhook-id"] for x in d] == ["msg_7", "msg_8"], "log in arrival order")
        request(base, "PUT", "/_control/endpoints/slow", {"secrets": [secret],
                                                          "responses": [{"status": 429, "headers": {"Retry-After": "2"}}]})
        status, h, _ = request(base, "POST", "/hooks/slow", payload.encode(),
                               signed_headers([secret], "msg_9", payload))
        check(status == 429 and h.get("Retry-After") == "2" and len(log_of(base, "slow")) == 3,
              "re-PUT replaces config (429 + Retry-After), log kept")

        # 8. client timeout during delay: receiver survives
        request(base, "PUT", "/_control/endpoints/to", {"responses": [{"status": 200, "delay_ms": 800}]})
        try:
            request(base, "POST", "/hooks/to", b"{}", {"content-type": "application/json"}, timeout=0.2)
        except Exception:
            pass
        time.sleep(1.0)
        check(request(base, "GET", "/_control/log/to")[0] == 200 and proc.poll() is None,
              "receiver alive after a client timed out")

        proc.terminate()
        check(proc.stdout.read() == "", "nothing else on stdout")
        print("PASS")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
