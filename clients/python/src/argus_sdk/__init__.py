"""Python SDK for the Argus event-ingestion API.

    from argus_sdk import Client

    with Client() as client:  # ARGUS_URL, ARGUS_API_KEY
        session = client.create_session()
        client.track(session_id=session["id"], category="page", name="view", data={"path": "/"})
"""

__version__ = "0.1.0"

from .errors import ArgusError  # noqa: E402
from .client import Client, Ingest  # noqa: E402
from .transport import Response, Transport, TransportError, UrllibTransport  # noqa: E402

__all__ = ["ArgusError", "Client", "Ingest", "Response", "Transport", "TransportError", "UrllibTransport", "__version__"]
