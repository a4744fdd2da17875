"""Argus quickstart: create a session, track a few events, flush, print what was sent."""
import os

from argus_sdk import Client

client = Client(
    os.environ["ARGUS_URL"],  # e.g. http://127.0.0.1:3000 (`make dev`)
    os.environ["ARGUS_API_KEY"],
    on_error=lambda event, error: print("not stored:", error),  # 400/409 items, retries exhausted
)
with client:  # on exit: flush what is queued, stop the background worker
    session = client.create_session(metadata={"app": "quickstart"})
    for path in ["/", "/pricing", "/signup"]:
        client.track(session_id=session["id"], category="page", name="view", data={"path": path})

    # DataStream Pro's shape: no session needed; batched per stream through POST /ingest/batch.
    client.ingest.send_event(stream_id="quickstart", event_type="signup", data={"plan": "pro"})

    client.flush(timeout=30)  # track() and send_event() only queue; flush() sends and waits
    print(f"sent {client.sent} events, failed {client.failed}, dropped {client.dropped}")

raise SystemExit(1 if client.failed or client.dropped else 0)
