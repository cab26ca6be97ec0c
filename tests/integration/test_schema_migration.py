"""Stores written by earlier releases (schema v1, v2) are migrated in place, on Milvus Lite and a server.

The v1 definitions are kept here as they shipped (commit 363d2f7): no schema version property; no
retry time or validators in `hn_stories`; no full text or story metadata in `hn_chunks`. v2 (commit
45ae3d0) added those; v3 adds comment threads. Each store is filled through its own definitions, then
opened by today's code.
"""

from __future__ import annotations

import numpy as np
import pytest

from include.config import CHUNKS_COLLECTION, STORIES_COLLECTION
from include.records import chunk_id
from include.store import ChunkStore
from include.store.client import close_client, open_client
from include.store.collections import CONSISTENCY, query_all
from include.store.schema import SCHEMA_VERSIONS, VERSION_PROPERTY

STORIES = 250  # more than one page of the copy's writes would hide nothing; enough to count
CURRENT = SCHEMA_VERSIONS[CHUNKS_COLLECTION]


def v1_chunks_schema():
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, description="Hacker News story chunks")
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("story_id", DataType.INT64)
    schema.add_field("chunk_index", DataType.INT64)
    schema.add_field("title", DataType.VARCHAR, max_length=2048)
    schema.add_field("url", DataType.VARCHAR, max_length=4096)
    schema.add_field("text", DataType.VARCHAR, max_length=65535)
    schema.add_field("ingested_at", DataType.INT64)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=384)
    return schema


def v1_stories_schema():
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, description="Ingestion state per story")
    schema.add_field("story_id", DataType.INT64, is_primary=True)
    schema.add_field("status", DataType.VARCHAR, max_length=16)
    schema.add_field("stage", DataType.VARCHAR, max_length=16)
    schema.add_field("reason", DataType.VARCHAR, max_length=4096)
    schema.add_field("attempts", DataType.INT64)
    schema.add_field("chunk_count", DataType.INT64)
    schema.add_field("title", DataType.VARCHAR, max_length=2048)
    schema.add_field("url", DataType.VARCHAR, max_length=4096)
    schema.add_field("updated_at", DataType.INT64)
    schema.add_field("unused_vector", DataType.FLOAT_VECTOR, dim=2)
    return schema


def build_v1_store(client) -> None:
    """The first release's collections, indexes and rows (its `ensure_collections` and writes)."""
    client.create_collection(CHUNKS_COLLECTION, schema=v1_chunks_schema(), consistency_level=CONSISTENCY)
    client.create_collection(STORIES_COLLECTION, schema=v1_stories_schema(), consistency_level=CONSISTENCY)
    for name, field, kind, metric, params in ((CHUNKS_COLLECTION, "embedding", "IVF_FLAT", "COSINE", {"nlist": 128}),
                                              (STORIES_COLLECTION, "unused_vector", "FLAT", "L2", {})):
        index = client.prepare_index_params()
        index.add_index(field_name=field, index_name=field, index_type=kind, metric_type=metric, params=params)
        client.create_index(name, index)
        client.load_collection(name)
    rng = np.random.default_rng(0)
    client.insert(CHUNKS_COLLECTION, [
        {"id": chunk_id(s, 0), "story_id": s, "chunk_index": 0, "title": f"Story {s}", "url": "https://e.com",
         "text": f"text of story{s}", "ingested_at": 1, "embedding": rng.normal(size=384).astype(np.float32).tolist()}
        for s in range(1, STORIES + 1)])
    client.insert(STORIES_COLLECTION, [
        {"story_id": s, "status": "failed" if s % 10 == 0 else "ingested", "stage": "fetch" if s % 10 == 0 else "",
         "reason": f"story {s}: fetch: HTTP 404" if s % 10 == 0 else "", "attempts": 1 if s % 10 == 0 else 0,
         "chunk_count": 0 if s % 10 == 0 else 1, "title": f"Story {s}", "url": "https://e.com", "updated_at": 5,
         "unused_vector": [0.0, 0.0]}
        for s in range(1, STORIES + 1)])


def v2_schemas(full_text: bool):
    """v1 plus what v2 added (and nothing of v3)."""
    from pymilvus import DataType, Function, FunctionType

    chunks, stories = v1_chunks_schema(), v1_stories_schema()
    if full_text:
        chunks.fields[5].params["enable_analyzer"] = True  # text
    for name, kind in (("kind", DataType.VARCHAR), ("posted_at", DataType.INT64), ("points", DataType.INT64),
                       ("comments", DataType.INT64), ("domain", DataType.VARCHAR)):
        chunks.add_field(name, kind, **({"max_length": 256} if kind == DataType.VARCHAR else {}))
    if full_text:
        chunks.add_field("text_sparse", DataType.SPARSE_FLOAT_VECTOR)
        chunks.add_function(Function(name="text_bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                     output_field_names=["text_sparse"]))
    for name, kind in (("next_attempt_at", DataType.INT64), ("etag", DataType.VARCHAR),
                       ("last_modified", DataType.VARCHAR), ("fingerprint", DataType.VARCHAR)):
        stories.add_field(name, kind, **({"max_length": 1024} if kind == DataType.VARCHAR else {}))
    return chunks, stories


def build_v2_store(client, full_text: bool) -> None:
    chunks, stories = v2_schemas(full_text)
    client.create_collection(CHUNKS_COLLECTION, schema=chunks, consistency_level=CONSISTENCY)
    client.create_collection(STORIES_COLLECTION, schema=stories, consistency_level=CONSISTENCY)
    indexes = [(CHUNKS_COLLECTION, "embedding", "IVF_FLAT", "COSINE", {"nlist": 128}),
               (STORIES_COLLECTION, "unused_vector", "FLAT", "L2", {})]
    if full_text:
        indexes.append((CHUNKS_COLLECTION, "text_sparse", "SPARSE_INVERTED_INDEX", "BM25", {}))
    for name, field, kind, metric, params in indexes:
        index = client.prepare_index_params()
        index.add_index(field_name=field, index_name=field, index_type=kind, metric_type=metric, params=params)
        client.create_index(name, index)
    for name in (CHUNKS_COLLECTION, STORIES_COLLECTION):
        client.alter_collection_properties(name, properties={VERSION_PROPERTY: "2"})
        client.load_collection(name)
    rng = np.random.default_rng(0)
    client.insert(CHUNKS_COLLECTION, [
        {"id": chunk_id(s, i), "story_id": s, "chunk_index": i, "title": f"Story {s}", "url": "https://e.com",
         "text": f"text {i} of story{s}", "ingested_at": 1, "embedding": rng.normal(size=384).astype(np.float32).tolist(),
         "kind": "page", "posted_at": 1_600_000_000 + s, "points": s, "comments": 2, "domain": "e.com"}
        for s in range(1, STORIES + 1) for i in range(2)])
    client.insert(STORIES_COLLECTION, [
        {"story_id": s, "status": "ingested", "stage": "", "reason": "", "attempts": 0, "chunk_count": 2,
         "title": f"Story {s}", "url": "https://e.com", "updated_at": 5, "unused_vector": [0.0, 0.0],
         "next_attempt_at": 0, "etag": f'"e{s}"', "last_modified": "", "fingerprint": "f"}
        for s in range(1, STORIES + 1)])


def test_a_v2_store_is_migrated_to_comment_threads_without_losing_a_row(client, lite_or_server):
    from include.config import ThreadConfig

    build_v2_store(client, full_text=lite_or_server == "lite")
    old = ChunkStore(client)
    stories_before = {r["story_id"]: r for r in query_all(old.client, STORIES_COLLECTION, "story_id >= 0", ["*"])}
    chunks_before = {r["id"]: r for r in query_all(old.client, CHUNKS_COLLECTION, "id >= 0", ["*"])}
    store = ChunkStore(client)
    store.schema.ensure_collections()
    assert store.schema.schema_version(STORIES_COLLECTION) == store.schema.schema_version(CHUNKS_COLLECTION) == CURRENT == 3
    after = {r["story_id"]: r for r in store.ledger.story_rows()}
    assert set(after) == set(stories_before)
    for story_id, row in stories_before.items():
        assert {k: after[story_id][k] for k in row if k != "unused_vector"} == {
            k: v for k, v in row.items() if k != "unused_vector"}
        assert [after[story_id][k] for k in ("posted_at", "thread_read_at", "thread_steps", "comment_chunks")] == [0] * 4
    fields = [f for f in chunks_before[chunk_id(1, 0)] if f not in ("embedding", "text_sparse")]
    chunks_after = {r["id"]: r for r in query_all(store.client, CHUNKS_COLLECTION, "id >= 0",
                                                         [*fields, "comment_id", "author", "content_hash"])}
    assert set(chunks_after) == set(chunks_before) and store.reader.count() == 2 * STORIES
    for key, row in chunks_before.items():
        assert {k: chunks_after[key][k] for k in fields} == {k: row[k] for k in fields}
        assert (chunks_after[key]["comment_id"], chunks_after[key]["author"]) == (0, "")
    assert store.schema.index_type() == "IVF_FLAT" and store.schema.has_full_text() is (lite_or_server == "lite")
    # Migrated stories have never had their thread read: later runs read them, a bounded number at a time.
    assert len(store.ledger.due_threads(ThreadConfig(), 2_000_000_000, 20)) == 20


@pytest.fixture(params=["lite", "server"])
def lite_or_server(request) -> str:
    return request.param


@pytest.fixture
def client(request, tmp_path, lite_or_server):
    uri = str(tmp_path / "milvus.db") if lite_or_server == "lite" else request.getfixturevalue("fresh_milvus_server").uri
    client = open_client(uri)
    yield client
    close_client(client, uri)


def test_a_v1_store_is_migrated_in_place_without_losing_a_row(client, lite_or_server):
    build_v1_store(client)
    before = {r["story_id"]: r for r in query_all(client, STORIES_COLLECTION, "story_id >= 0", ["*"])}
    chunks_before = {r["id"]: r for r in query_all(client, CHUNKS_COLLECTION, "id >= 0", ["*"])}
    assert ChunkStore(client).schema.schema_version(STORIES_COLLECTION) == 1
    store = ChunkStore(client)
    store.schema.ensure_collections()
    assert store.schema.schema_version(STORIES_COLLECTION) == store.schema.schema_version(CHUNKS_COLLECTION) == CURRENT
    properties = client.describe_collection(STORIES_COLLECTION)["properties"]
    assert properties[VERSION_PROPERTY] == str(CURRENT)
    after = {r["story_id"]: r for r in store.ledger.story_rows()}
    assert set(after) == set(before) and len(after) == STORIES
    for story_id, row in before.items():
        migrated = after[story_id]
        assert {k: migrated[k] for k in row if k != "unused_vector"} == {k: v for k, v in row.items() if k != "unused_vector"}
        assert (migrated["next_attempt_at"], migrated["etag"], migrated["last_modified"], migrated["fingerprint"]) == (0, "", "", "")
    assert store.reader.count() == STORIES and store.schema.index_type() == "IVF_FLAT"
    assert not client.has_collection(f"{STORIES_COLLECTION}__migrating")
    assert not client.has_collection(f"{CHUNKS_COLLECTION}__migrating")
    # Every chunk kept with its vector; the new fields filled; full text where the backend has BM25.
    fields = ["id", "story_id", "chunk_index", "title", "url", "text", "ingested_at", "embedding", "kind", "posted_at",
              "points", "comments", "domain"]
    chunks_after = {r["id"]: r for r in query_all(store.client, CHUNKS_COLLECTION, "id >= 0", fields)}
    assert set(chunks_after) == set(chunks_before)
    for key, row in chunks_before.items():
        migrated = chunks_after[key]
        assert {k: migrated[k] for k in row if k != "embedding"} == {k: v for k, v in row.items() if k != "embedding"}
        assert np.allclose(migrated["embedding"], row["embedding"], atol=1e-6)
        assert (migrated["kind"], migrated["domain"], migrated["posted_at"], migrated["points"]) == ("page", "e.com", 0, 0)
    assert store.schema.has_full_text() is (lite_or_server == "lite")  # the 2.3.5 server predates BM25
    if store.schema.has_full_text():
        assert [h["story_id"] for h in store.reader.text("story17", k=3)] == [17]
    # A v1 failure has no retry time: it is not retried on its own (its attempts were counted per run).
    assert store.ledger.due_failed_ids(10**12) == []
    store.schema.ensure_collections()  # a second open changes nothing
    assert len(store.ledger.story_rows()) == STORIES


def test_an_interrupted_migration_is_finished_or_redone(client):
    build_v1_store(client)
    store = ChunkStore(client)
    # Killed inside the swap (old collection dropped, copy not renamed yet): the copy becomes the collection.
    rename = client.rename_collection
    client.rename_collection = lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed inside the swap"))
    with pytest.raises(SystemExit):
        store.schema.ensure_collections()
    client.rename_collection = rename
    # The chunks migrate first: their old collection is gone, their copy whole.
    assert not client.has_collection(CHUNKS_COLLECTION) and client.has_collection(f"{CHUNKS_COLLECTION}__migrating")
    store.schema.ensure_collections()
    assert store.schema.schema_version(STORIES_COLLECTION) == CURRENT and len(store.ledger.story_rows()) == STORIES
    assert store.schema.schema_version(CHUNKS_COLLECTION) == CURRENT and store.reader.count() == STORIES
    # Killed mid-copy: both exist; the half copy is dropped and the migration redone from the original.
    client.drop_collection(STORIES_COLLECTION)
    build_v1_stories_only(client)
    client.create_collection(f"{STORIES_COLLECTION}__migrating", schema=v1_stories_schema(), consistency_level=CONSISTENCY)
    store.schema.ensure_collections()
    assert store.schema.schema_version(STORIES_COLLECTION) == CURRENT and len(store.ledger.story_rows()) == STORIES
    assert not client.has_collection(f"{STORIES_COLLECTION}__migrating")


def build_v1_stories_only(client) -> None:
    client.create_collection(STORIES_COLLECTION, schema=v1_stories_schema(), consistency_level=CONSISTENCY)
    index = client.prepare_index_params()
    index.add_index(field_name="unused_vector", index_name="unused_vector", index_type="FLAT", metric_type="L2")
    client.create_index(STORIES_COLLECTION, index)
    client.load_collection(STORIES_COLLECTION)
    client.insert(STORIES_COLLECTION, [
        {"story_id": s, "status": "ingested", "stage": "", "reason": "", "attempts": 0, "chunk_count": 1,
         "title": f"Story {s}", "url": "https://e.com", "updated_at": 5, "unused_vector": [0.0, 0.0]}
        for s in range(1, STORIES + 1)])


def test_a_current_store_that_lost_its_version_property_is_not_copied_again(tmp_path, caplog):
    """A Milvus 2.3.5 server forgets collection properties when it restarts (seen by bench.store_growth: the
    first open after a restart copied every collection). The fields still say the version. The loss is made
    here on Milvus Lite, which can drop a property (the 2.3 server's restart costs a minute)."""
    uri = str(tmp_path / "milvus.db")
    client = open_client(uri)
    try:
        store = ChunkStore(client)
        store.schema.ensure_collections()
        for name in (CHUNKS_COLLECTION, STORIES_COLLECTION):
            client.drop_collection_properties(name, property_keys=[VERSION_PROPERTY])
            assert VERSION_PROPERTY not in (client.describe_collection(name).get("properties") or {})
        caplog.set_level("INFO", logger="include.store.schema")
        reopened = ChunkStore(client)
        reopened.schema.ensure_collections()
        assert "migrating" not in caplog.text
        assert reopened.schema.schema_version(CHUNKS_COLLECTION) == reopened.schema.schema_version(STORIES_COLLECTION) \
            == CURRENT
    finally:
        close_client(client, uri)


def test_a_reader_never_migrates_an_older_store_and_says_what_will(tmp_path):
    """The status and search CLIs and the HTTP API load the store; a store of an older release is left as
    it is (a migration from a reader would race the writers) and the error names the way on."""
    from include.store.schema import SchemaOutdated

    uri = str(tmp_path / "milvus.db")
    client = open_client(uri)
    try:
        build_v1_store(client)
        with pytest.raises(SchemaOutdated, match="make migrate"):
            ChunkStore(client).schema.load()
        assert ChunkStore(client).schema.schema_version(STORIES_COLLECTION) == 1
        assert not any(name.endswith("__migrating") for name in client.list_collections())
    finally:
        close_client(client, uri)
