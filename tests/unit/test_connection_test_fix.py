"""The api-server middleware that reads a Test request's port 0 as blank (apache/airflow#73298, backported)."""

from __future__ import annotations

import asyncio
import json
import sys

from include.config import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "plugins"))
from hn_providers.connection_test_fix import PortlessConnectionTest, zero_port_as_blank  # noqa: E402


def test_only_a_port_of_zero_becomes_blank():
    assert json.loads(zero_port_as_blank(b'{"host": "http://m:19530", "port": 0}')) == {"host": "http://m:19530",
                                                                                      "port": None}
    for body in (b'{"port": 19530}', b'{"port": false}', b'{"port": null}', b'{"host": "h"}', b"[0]", b"not json"):
        assert zero_port_as_blank(body) == body


def through_middleware(method: str, path: str, chunks: list[bytes]) -> tuple[bytes, dict]:
    """The body and headers the wrapped app receives."""
    seen = {}

    async def app(scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message["body"], message["more_body"]
        seen.update(body=body, headers=dict(scope["headers"]))

    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return messages.pop(0)

    total = str(sum(map(len, chunks))).encode()
    scope = {"type": "http", "method": method, "path": path, "headers": [(b"content-length", total)]}
    asyncio.run(PortlessConnectionTest(app)(scope, receive, None))
    return seen["body"], seen["headers"]


def test_the_test_request_reaches_the_route_with_a_blank_port_and_its_new_length():
    body, headers = through_middleware("POST", "/api/v2/connections/test", [b'{"conn_type": "milvus", ', b'"port": 0}'])
    assert json.loads(body) == {"conn_type": "milvus", "port": None}
    assert headers[b"content-length"] == str(len(body)).encode()
    # Other requests pass untouched.
    for method, path in (("POST", "/api/v2/connections"), ("PATCH", "/api/v2/connections/test")):
        assert through_middleware(method, path, [b'{"port": 0}'])[0] == b'{"port": 0}'
