"""Registers the project's HTTP API and its ingestion view with Airflow (served by the api-server).

- `/hn-ingest/api/...`: search, stories, status (plugins/hn_providers/api.py), behind Airflow's login;
- "HN ingestion" in the UI's navigation: the view at `/hn-ingest/ui`, shown inside the Airflow UI;
- a listener that notes each finished run's outcome ("8 ingested · 1 failed · 33 chunks") on the run;
- until Airflow ships its fix, the UI's Test button for connections without a port (connection_test_fix.py).
"""

from __future__ import annotations

from functools import cache

from airflow.plugins_manager import AirflowPlugin
from hn_providers import run_notes
from hn_providers.connection_test_fix import PortlessConnectionTest

URL_PREFIX = "/hn-ingest"


@cache
def _api():
    from hn_providers.api import create_app

    return create_app()


class LazyApi:
    """The API app, built at its first request: every Airflow process loads plugins (each task too),
    and only the api-server needs FastAPI and the auth machinery (0.7 s of imports)."""

    async def __call__(self, scope, receive, send) -> None:
        await _api()(scope, receive, send)


class HnIngestPlugin(AirflowPlugin):
    name = "hn_ingest"
    fastapi_apps = [{"app": LazyApi(), "url_prefix": URL_PREFIX, "name": "hn-rag-ingest API"}]
    external_views = [{"name": "HN ingestion", "href": f"{URL_PREFIX}/ui", "url_route": "hn-ingest",
                       "destination": "nav", "category": "browse"}]
    listeners = [run_notes]
    # Until Airflow ships apache/airflow#73298: Test in the UI for connections without a port (Milvus URIs).
    fastapi_root_middlewares = [{"middleware": PortlessConnectionTest, "name": "test connections without a port"}]
