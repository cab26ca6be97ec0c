"""`airflow dags test hn_ingest` against Milvus servers, with staging on its own base URL.

- A real Milvus 2.3.5 standalone server: a run, a second run (nothing to do), a reindex; rows equal
  a clean run on the laptop default (Milvus Lite), no duplicates (a server keeps both rows of an
  `insert`, so this would fail if the store inserted), and no task needed a retry.
- `milvus-lite server` (gRPC), which told idle pymilvus channels off with `GOAWAY too_many_pings`:
  a page that keeps the extract stage busy for over 30 s puts that gap between the run's Milvus
  clients; the run must still need no retry.

In both, `HN_INGEST_STAGING_URL` points away from `HN_INGEST_DATA_DIR`: no batch file may appear under
the data directory.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.airflow_cli import AirflowEnv
from tests.invariants import assert_no_duplicates, assert_stories_whole, chunk_rows
from tests.replay_server import ReplayServer, load_corpus

pytestmark = pytest.mark.e2e

SLOW_PAGE_S = 30  # the fetch deadline: the gap between the run's Milvus clients exceeds it


@pytest.fixture(scope="module")
def replay(require_corpus):
    replay = ReplayServer()
    load_corpus(replay, url_stories=10, text_posts=1, dead=1, deleted=1)
    with replay:
        yield replay


@pytest.fixture(scope="module")
def clean(replay, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clean")
    env = AirflowEnv(tmp / "airflow", tmp / "data", replay.connection_env())
    env.migrate()
    run = env.dags_test()
    assert run.succeeded, run.log[-3000:]
    return env.status(chunks=True)


def server_env(tmp_path, replay, uri: str) -> AirflowEnv:
    env = AirflowEnv(tmp_path / "airflow", tmp_path / "data", {
        **replay.connection_env(),
        "AIRFLOW_CONN_MILVUS_DEFAULT": json.dumps({"conn_type": "milvus", "host": uri}),
        "HN_INGEST_STAGING_URL": (tmp_path / "staging").as_uri(),
    })
    env.migrate()
    return env


def assert_no_batch_file_under(folder) -> None:
    leftovers = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    assert not [p for p in leftovers if p.name.startswith("batch-") or "staging" in p.parts], leftovers


def test_a_milvus_server_run_rerun_and_reindex_match_a_clean_lite_run(replay, clean, fresh_milvus_server, tmp_path):
    env = server_env(tmp_path, replay, fresh_milvus_server.uri)
    first = env.dags_test()
    assert first.succeeded, first.log[-3000:]
    assert env.retried_tasks(first) == []
    assert (tmp_path / "staging").is_dir()  # the base was used (each run's folder is removed when it succeeds)
    assert_no_batch_file_under(tmp_path / "data")
    after_first = env.status(chunks=True)
    assert after_first["uri"] == fresh_milvus_server.uri
    assert chunk_rows(after_first) == chunk_rows(clean)

    again = env.dags_test()
    assert again.succeeded and again.lines("new run: 0 stories"), again.log[-3000:]
    reindex = env.dags_test({"reindex": True})
    assert reindex.succeeded, reindex.log[-3000:]
    assert env.retried_tasks(reindex) == []
    final = env.status(chunks=True)
    assert_no_duplicates(final)
    assert_stories_whole(final)
    assert chunk_rows(final) == chunk_rows(clean)
    assert final["index_type"] == "IVF_FLAT"
    assert_no_batch_file_under(tmp_path / "data")


def test_milvus_lite_server_survives_a_long_gap_between_clients_in_one_run(replay, clean, milvus_lite_server, tmp_path):
    def slow_page(request):
        # Headers at once, then a byte every 5 s (inside the read timeout): the fetch runs into its 30 s
        # deadline, and the batch's extract stage takes that long.
        request.send_response(200)
        request.send_header("Content-Type", "text/html")
        request.send_header("Content-Length", "100000")
        request.end_headers()
        deadline = time.monotonic() + SLOW_PAGE_S + 10
        while time.monotonic() < deadline:
            request.wfile.write(b"<")
            request.wfile.flush()
            time.sleep(5)

    replay.routes["/pages/slow.html"] = slow_page
    slow_id = max(replay.items) + 1
    replay.add_item({"id": slow_id, "type": "story", "by": "tester", "time": int(time.time()), "title": "Slow page",
                     "url": f"{replay.base_url}/pages/slow.html", "score": 1, "descendants": 0})
    try:
        env = server_env(tmp_path, replay, milvus_lite_server.uri)
        started = time.monotonic()
        run = env.dags_test()
        elapsed = time.monotonic() - started
    finally:
        del replay.items[slow_id]
        del replay.routes["/pages/slow.html"]
    assert run.succeeded, run.log[-3000:]
    assert env.retried_tasks(run) == []
    assert elapsed > SLOW_PAGE_S
    assert not run.lines("too_many_pings"), run.lines("too_many_pings")
    status = env.status(chunks=True)
    assert_no_duplicates(status)
    rows = {r["story_id"]: r for r in status["story_rows"]}
    assert rows[slow_id]["status"] in ("ingested", "failed")  # past the fetch deadline or not: recorded either way
    assert {k for k in chunk_rows(clean)} <= chunk_rows(status)
    assert_no_batch_file_under(tmp_path / "data")
