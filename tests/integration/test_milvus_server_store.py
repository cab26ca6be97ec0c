"""The write protocol against a real Milvus server (2.3.5 standalone from PyPI, tests/milvus_server.py).

On Milvus Lite an `insert` of an existing key replaces the row, so a no-duplicate check there cannot
tell `insert` from `upsert`. A server keeps both rows: here the same checks would fail if the store
inserted, and `test_the_checks_catch_a_store_that_inserts` proves it by making it insert.
"""

from __future__ import annotations

import numpy as np
import pytest

from include.records import Chunk, StoryOutcome
from include.store import ChunkStore
from include.store.client import close_client, open_client


def story_batch(story_id: int, n: int, seed: int = 0, version: str = "v1"):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk(story_id, i, f"Story {story_id}", "https://example.com", f"{version} text {i} of {story_id}")
              for i in range(n)]
    return chunks, vectors, [StoryOutcome(story_id, "ingested", f"Story {story_id}", "https://example.com", chunk_count=n)]


def merge(*batches):
    chunks = [c for b in batches for c in b[0]]
    vectors = np.concatenate([b[1] for b in batches])
    outcomes = [o for b in batches for o in b[2]]
    return chunks, vectors, outcomes


@pytest.fixture
def store(fresh_milvus_server):
    client = open_client(fresh_milvus_server.uri)
    store = ChunkStore(client)
    store.schema.ensure_collections()
    yield store
    close_client(client, fresh_milvus_server.uri)


def assert_exactly(store: ChunkStore, expected: dict[int, int]) -> None:
    """Each story has chunks 0..n-1 once, no other story has any, and its state row says n."""
    # A server's query results are de-duplicated by primary key: only count(*) sees a second copy.
    rows = store.client.query("hn_chunks", filter="id >= 0", output_fields=["id", "story_id", "chunk_index"],
                              consistency_level="Strong", limit=16384)
    pairs = [(r["story_id"], r["chunk_index"]) for r in rows]
    assert store.reader.count() == len(rows) == len(set(pairs)), (
        f"duplicated rows: count(*) {store.reader.count()}, {len(set(pairs))} distinct (story_id, chunk_index)")
    assert sorted(pairs) == sorted((s, i) for s, n in expected.items() for i in range(n))
    states = store.ledger.states(expected)
    assert {s: states[s]["chunk_count"] for s in expected} == expected


def run_protocol(store: ChunkStore) -> None:
    """Rerun, retry, reindex with fewer and more chunks, and a crash between chunks and states."""
    first = merge(story_batch(1, 5), story_batch(2, 3, seed=1))
    store.writer.write_batch(*first)
    assert_exactly(store, {1: 5, 2: 3})
    store.writer.write_batch(*first)  # a rerun or an Airflow retry of the same batch
    assert_exactly(store, {1: 5, 2: 3})
    # Reindex: story 1 now has 2 chunks (its old tail goes), story 2 has 6 (new rows beside replaced ones).
    store.writer.write_batch(*merge(story_batch(1, 2, seed=2, version="v2"), story_batch(2, 6, seed=3, version="v2")))
    assert_exactly(store, {1: 2, 2: 6})
    assert [r["text"] for r in store.reader.chunks_of(1)] == ["v2 text 0 of 1", "v2 text 1 of 1"]
    # A crash after the chunk rows, before the states; then the task is cleared and runs again.
    crashed = story_batch(3, 4, seed=4)
    original = store.ledger.write_states
    store.ledger.write_states = lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt("SIGKILL stand-in"))
    with pytest.raises(KeyboardInterrupt):
        store.writer.write_batch(*crashed)
    store.ledger.write_states = original
    assert 3 not in store.ledger.states([3])  # not marked ingested: the next run takes it again
    store.writer.write_batch(*crashed)
    assert_exactly(store, {1: 2, 2: 6, 3: 4})


def test_rerun_retry_reindex_and_crash_leave_each_chunk_once_on_a_server(store):
    run_protocol(store)
    hits = store.reader.dense(story_batch(2, 6, seed=3)[1][0], k=1)
    assert hits[0]["story_id"] == 2 and hits[0]["chunk_index"] == 0
    assert store.schema.index_type() == "IVF_FLAT"


def test_the_checks_catch_a_store_that_inserts(store):
    """Mutation check: with `upsert` turned into `insert`, the server keeps both rows and the checks fail."""
    client = store.client
    client.upsert = client.insert
    with pytest.raises(AssertionError, match="duplicated"):
        run_protocol(store)


def test_the_api_keeps_one_client_for_a_server_and_opens_lite_per_request(fresh_milvus_server, tmp_path, monkeypatch):
    """A server connection is opened once per api-server process (a connect and a load check per request
    were most of a request's time); a Lite directory per request, so the write tasks get it in between."""
    import json

    from include.config import PROJECT_ROOT
    from include.store import client as client_module

    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "plugins"))
    from hn_providers import api

    opened: list[str] = []
    real_open = client_module.open_client
    monkeypatch.setattr(client_module, "open_client", lambda uri, *a, **k: opened.append(uri) or real_open(uri, *a, **k))
    monkeypatch.setattr(api, "_server_stores", {})
    lite = str(tmp_path / "milvus.db")
    for uri in (fresh_milvus_server.uri, lite):
        monkeypatch.setenv("AIRFLOW_CONN_MILVUS_DEFAULT", json.dumps({"conn_type": "milvus", "host": uri}))
        for _ in range(3):
            with api.opened_store() as store:
                assert store.reader.count() == 0
    assert opened == [fresh_milvus_server.uri, lite, lite, lite]
    for store in api._server_stores.values():
        close_client(store.client, fresh_milvus_server.uri)
