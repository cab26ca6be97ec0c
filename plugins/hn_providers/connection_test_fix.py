"""The Test button of the Airflow UI for a connection without a port: apache/airflow#73298, backported.

Airflow 3.3.2's connections list posts `port: Number(connection.port)`, which is 0 when the
connection has none, and `POST /api/v2/connections/test` compares that with the stored NULL, sees
"a different destination" and answers 400 ("The host or port to test differs from the stored
connection"), so Test fails for every connection without a port: a Milvus connection's URI carries it.
Upstream now reads port 0 as blank; this api-server middleware does the same to the request's body
before the route sees it. Delete it once Airflow ships the fix (registered in plugins/hn_ingest_plugin.py).
"""

from __future__ import annotations

import json

TEST_PATH = "/api/v2/connections/test"


def zero_port_as_blank(body: bytes) -> bytes:
    """The request body with ``"port": 0`` made ``null``; anything else unchanged."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    port = payload.get("port") if isinstance(payload, dict) else None
    if type(port) is not int or port != 0:
        return body
    return json.dumps({**payload, "port": None}).encode()


class PortlessConnectionTest:
    """ASGI middleware: `zero_port_as_blank` on the body of `POST .../api/v2/connections/test`."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(TEST_PATH):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        body = zero_port_as_blank(body)
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # what follows the body: a disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)
