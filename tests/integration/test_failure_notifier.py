"""The failure alert: an ERROR line always, and a POST to the webhook of `hn_ingest_alerts` when set.

The webhook is a real HTTP server on loopback; the task context is built here (a task that fails for
good after its retries takes minutes of retry delays to produce for real).
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from include.config import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "plugins"))  # where Airflow finds the plugins
from hn_providers.notifiers.failure import IngestFailureNotifier  # noqa: E402


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200 if self.path == "/hook" else 500)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def context():
    ti = SimpleNamespace(task_id="write_batch", map_index=2, try_number=4)
    return {"ti": ti, "run_id": "scheduled__2026-11-24T00:00:00", "exception": RuntimeError("Milvus is unreachable")}


def test_the_alert_is_logged_and_posted_to_the_webhook(webhook, monkeypatch, capfd):
    url, received = webhook
    monkeypatch.setenv("AIRFLOW_CONN_HN_INGEST_ALERTS", json.dumps({"conn_type": "http", "host": f"{url}/hook"}))
    IngestFailureNotifier().notify(context())
    logged = ''.join(capfd.readouterr())
    expected = ("hn_ingest: task write_batch [2] of run scheduled__2026-11-24T00:00:00 failed after 4 tries: "
                "RuntimeError: Milvus is unreachable")
    assert received == [{"text": expected}]
    assert expected in logged and "error" in logged


def test_without_a_connection_the_alert_is_the_error_line(monkeypatch, capfd):
    monkeypatch.delenv("AIRFLOW_CONN_HN_INGEST_ALERTS", raising=False)
    IngestFailureNotifier().notify(context())
    logged = ''.join(capfd.readouterr())
    assert "failed after 4 tries: RuntimeError: Milvus is unreachable" in logged


def test_a_webhook_that_fails_is_reported_not_raised(webhook, monkeypatch, capfd):
    url, received = webhook
    monkeypatch.setenv("AIRFLOW_CONN_HN_INGEST_ALERTS", json.dumps({"conn_type": "http", "host": f"{url}/broken"}))
    IngestFailureNotifier().notify(context())
    logged = ''.join(capfd.readouterr())
    assert len(received) == 1 and "could not send the failure alert" in logged
