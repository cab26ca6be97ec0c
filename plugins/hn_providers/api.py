"""The HTTP API an AI application calls for context, served by the Airflow api-server (no second server).

Mounted by `plugins/hn_ingest_plugin.py` under `/hn-ingest`; every route needs an Airflow login:

    GET /hn-ingest/api/search?q=...&k=5&mode=hybrid|dense|text&since=2020-12-29&until=...&domain=...&min_points=...
    GET /hn-ingest/api/stories/<id>     the story's state, reason and all its chunks in order
    GET /hn-ingest/api/status           counts, the latest failures, freshness, the last runs

On a Milvus server, one client per api-server process serves every request (gRPC clients are thread-safe;
an open per request would cost a connect and a load check each time). A Milvus Lite directory is opened per
request and closed after it: Lite lets one process hold the directory, and the write tasks need it between
requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse

from hn_providers.auth import DAG_ID, require_user
from hn_providers.rate_limit import per_user_limit
from hn_providers.runs import recent_runs
from hn_providers.ui import router as ui_router

_server_stores: dict[tuple[str, str, str], object] = {}  # (uri, token, db_name) -> ChunkStore, for the process
_server_stores_lock = threading.Lock()


@contextmanager
def opened_store() -> Iterator:
    from hn_providers.hooks.milvus import MilvusHook
    from include.store.client import MilvusUnavailable, is_lite_uri
    from include.store.schema import SchemaOutdated

    # The hook only resolves the connection: the client is opened here, without the hook's stderr
    # routing (a process-wide fd swap that concurrent requests in threads would undo out of order).
    settings = MilvusHook().client_kwargs
    try:
        if is_lite_uri(settings["uri"]):
            with _lite_store(settings) as store:
                yield store
        else:
            yield _server_store(settings)
    except (MilvusUnavailable, SchemaOutdated) as exc:
        raise HTTPException(503, f"the store is unavailable: {exc}", headers={"Retry-After": "30"}) from exc


@contextmanager
def _lite_store(settings: dict[str, str]) -> Iterator:
    from include.store import ChunkStore
    from include.store.client import close_client, open_client
    from include.store.collections import BoundedReads

    client = open_client(settings["uri"], settings["token"], lock_timeout=15, db_name=settings["db_name"])
    try:
        store = ChunkStore(BoundedReads(client))
        store.schema.load()
        yield store
    finally:
        close_client(client, settings["uri"])


def _server_store(settings: dict[str, str]):
    from include.store import ChunkStore
    from include.store.client import open_client
    from include.store.collections import BoundedReads

    key = (settings["uri"], settings["token"], settings["db_name"])
    with _server_stores_lock:
        store = _server_stores.get(key)
        if store is None:
            client = open_client(settings["uri"], settings["token"], db_name=settings["db_name"])
            store = ChunkStore(BoundedReads(client))
            store.schema.load()
            _server_stores[key] = store
    return store


def parse_time(value: str | None, name: str) -> int | None:
    """Unix seconds from `value`: Unix seconds, or an ISO date/time (UTC unless it names a zone)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{name} must be Unix seconds or an ISO date such as 2020-12-29 (got {value[:40]!r})") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


router = APIRouter(dependencies=[Depends(require_user), Depends(per_user_limit)])


@router.get("/search", summary="Stories for a query, best first, each with its best chunks")
def search_stories(
    q: str = Query(..., description="the question or keywords", max_length=10_000),
    k: int = Query(5, description="stories to return (1-50)"),
    mode: str = Query("hybrid", description="hybrid (dense + BM25, fused), dense or text (BM25)"),
    since: str | None = Query(None, description="stories posted at or after (Unix seconds or ISO date)"),
    until: str | None = Query(None, description="stories posted before"),
    domain: str | None = Query(None, description="only pages on this host, e.g. github.com"),
    min_points: int | None = Query(None, description="only stories with at least this many points"),
    kind: str | None = Query(None, description="page (the story's page or its own text) or comment (its thread); "
                                                 "both when absent"),
    chunks: int = Query(3, description="best chunks per story (1-20)"),
) -> dict:
    from include.store.search import Filters, InvalidQuery, check_request, search

    filters = Filters(since=parse_time(since, "since"), until=parse_time(until, "until"), kind=kind,
                      min_points=min_points, domain=domain.strip().lower() if domain else None)
    try:
        check_request(q, k, mode, chunks)  # before the store is opened: a bad request costs nothing
        filters.expression()
        started = time.perf_counter()
        with opened_store() as store:
            result = search(store, q, k, mode, filters, chunks)
    except InvalidQuery as exc:
        raise HTTPException(400, str(exc)) from exc
    return {**result.to_dict(), "seconds": round(time.perf_counter() - started, 3)}


@router.get("/stories/{story_id}", summary="A story's state, reason and all its chunks in order")
def story(story_id: int) -> dict:
    from include.store.search import document

    with opened_store() as store:
        found = document(store, story_id)
    if found is None:
        raise HTTPException(404, f"story {story_id} is not in the store (never seen by a run)")
    return found


@router.get("/status", summary="Counts, the latest failures, freshness and the last runs")
def status() -> dict:
    from hn_providers.hooks.milvus import MilvusHook
    from include.ops.status import store_summary

    with opened_store() as store:
        summary = store_summary(store, time.time(), uri=MilvusHook().client_kwargs["uri"])
    return {**summary, "runs": recent_runs(DAG_ID)}


def create_app() -> FastAPI:
    app = FastAPI(title="hn-rag-ingest", description="Search and status of the stories hn_ingest has stored.",
                  version="1")
    app.include_router(router, prefix="/api")
    app.include_router(ui_router)

    @app.exception_handler(HTTPException)
    def _error(_, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return app
