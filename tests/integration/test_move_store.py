"""`python -m include.ops.move_store`: a Milvus Lite store copied to a real Milvus 2.3.5 server.

The Lite store is written by the pipeline's own writer (page and comment chunks, ingested, failed and
skipped stories, thread fields) with more rows than one page of the copy, so the paging is exercised.
Every row of both collections is compared field by field, vectors exactly; a second run must change
nothing (a server counts a key written twice by `insert` twice, so count(*) would see it); a copy cut
off midway is finished by the next run; a target holding more than the source is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from include.config import CHUNKS_COLLECTION, JOBS_COLLECTION, PROJECT_ROOT, STORIES_COLLECTION
from include.ops.move_store import ORDER, MoveIncomplete, every_row, move_store
from include.records import Chunk, StoryOutcome, ThreadOutcome
from include.store import ChunkStore
from include.store.client import close_client, open_client
from include.store.collections import PRIMARY_KEY, count, pages
from include.store.ledger import StoryLedger
from include.store.schema import StoreSchema

INGESTED, PAGE_CHUNKS, COMMENT_CHUNKS = 20, 45, 15  # 1,200 chunk rows
STORY_IDS = [41_000_000 + 1_000 * i for i in range(INGESTED + 4)]


def write_source(uri: str) -> None:
    """A store as the pipeline writes it: 20 ingested stories with pages and threads, 2 failed, 2 skipped,
    and a reindex job under way."""
    rng = np.random.default_rng(7)
    client = open_client(uri)
    try:
        store = ChunkStore(client)
        store.schema.ensure_collections()
        for story_id in STORY_IDS[:INGESTED]:
            title, url = f"Story {story_id}: naïve café, 東京", f"https://example.com/{story_id}"
            chunks = [Chunk(story_id, i, title, url, f"page text {i} of {story_id} — ünïcode", 1_700_000_000, 42, 7)
                      for i in range(PAGE_CHUNKS)]
            chunks += [Chunk(story_id, 0, title, f"https://news.ycombinator.com/item?id={story_id + k + 1}",
                             f'Comment by ann, replying to bob: "…" reply {k}', 1_700_000_100 + k, 42, 7, "comment",
                             story_id + k + 1, "ann", f"/{story_id + 1}/{story_id + k + 1}", f"{k:032x}")
                       for k in range(COMMENT_CHUNKS)]
            vectors = rng.standard_normal((len(chunks), 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            outcome = StoryOutcome(story_id, "ingested", title, url, chunk_count=PAGE_CHUNKS, etag='"e"',
                                   last_modified="Tue, 29 Dec 2020 22:46:40 GMT", fingerprint="f" * 16,
                                   posted_at=1_700_000_000, points=42, comments=7, item_hash="a" * 32)
            thread = ThreadOutcome(story_id, 1_700_003_600, True, COMMENT_CHUNKS, COMMENT_CHUNKS, [], 42, 7, 1)
            store.writer.write_batch(chunks, vectors, [outcome], [thread])
        failed, skipped = STORY_IDS[INGESTED : INGESTED + 2], STORY_IDS[INGESTED + 2 :]
        store.writer.write_batch([], np.zeros((0, 384), np.float32),
                                 [StoryOutcome(i, "failed", f"Story {i}", "https://down.example", "HTTP 503",
                                               stage="fetch", retry_after=120.0) for i in failed]
                                 + [StoryOutcome(i, "skipped", f"Story {i}", "", "title only", stage="item")
                                    for i in skipped])
        store.jobs.start_reindex(conditional=True, now=1_700_000_000)
    finally:
        close_client(client, uri)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("move-source") / "milvus.db")
    write_source(uri)
    return uri


def move(source: str, target: str, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "include.ops.move_store", "--from", source, "--to", target, *options],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)


def snapshot(client, fields_from) -> dict[str, dict]:
    """Every row of every collection by primary key, with the fields the target stores."""
    rows = {}
    for name in ORDER:
        fields = StoreSchema(fields_from).stored_fields(name)
        rows[name] = {row[PRIMARY_KEY[name]]: row for page in pages(client, name, every_row(client, name), fields, 700)
                      for row in page}
    return rows


def assert_same_rows(expected: dict[str, dict], found: dict[str, dict]) -> None:
    for name, rows in expected.items():
        assert found[name].keys() == rows.keys(), f"{name}: keys differ"
        for key, row in rows.items():
            other = found[name][key]
            for field, value in row.items():
                if field in ("embedding", "unused_vector"):
                    assert np.array_equal(np.asarray(value, np.float32), np.asarray(other[field], np.float32)), \
                        f"{name} {key}: {field} differs"
                else:
                    assert other[field] == value, f"{name} {key}: {field} {other[field]!r} != {value!r}"


def opened(uri: str):
    client = open_client(uri)
    StoreSchema(client).ensure_collections()
    return client


def test_the_whole_store_comes_across_and_a_second_run_changes_nothing(source, fresh_milvus_server):
    server = fresh_milvus_server.uri
    first = move(source, server, "--page", "500")  # 1,200 chunk rows: three pages, upserts of up to 500
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"hn_chunks {INGESTED * (PAGE_CHUNKS + COMMENT_CHUNKS)} rows" in first.stdout
    lite, target = opened(source), opened(server)
    try:
        expected, found = snapshot(lite, target), snapshot(target, target)
        assert len(expected[CHUNKS_COLLECTION]) == INGESTED * (PAGE_CHUNKS + COMMENT_CHUNKS) > 1_000
        assert len(expected[STORIES_COLLECTION]) == len(STORY_IDS)
        assert {r["status"] for r in expected[STORIES_COLLECTION].values()} == {"ingested", "failed", "skipped"}
        assert list(expected[JOBS_COLLECTION]) == ["reindex"]
        assert_same_rows(expected, found)
        counts = {name: count(target, name) for name in expected}
    finally:
        close_client(lite, source)
        close_client(target, server)

    second = move(source, server, "--page", "500")
    assert second.returncode == 0, second.stderr[-3000:]
    target = opened(server)
    try:
        assert {name: count(target, name) for name in expected} == counts  # no key stored twice
        assert_same_rows(expected, snapshot(target, target))
        # The target is a working store: a chunk's own vector finds it first.
        key, row = next(iter(expected[CHUNKS_COLLECTION].items()))
        hits = ChunkStore(target).reader.dense(np.asarray(row["embedding"], np.float32), k=1)
        assert hits[0]["story_id"] == row["story_id"] and hits[0]["chunk_index"] == row["chunk_index"]
    finally:
        close_client(target, server)


def test_a_move_cut_off_midway_is_finished_by_the_next_run(source, fresh_milvus_server):
    server = fresh_milvus_server.uri
    lite, target = open_client(source), open_client(server)
    try:
        upsert, calls = target.upsert, []

        def dies_on_the_third_write(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise ConnectionError("connection lost (test)")
            return upsert(*args, **kwargs)

        target.upsert = dies_on_the_third_write
        with pytest.raises(ConnectionError):
            move_store(lite, target, page=400)
        assert 0 < count(target, CHUNKS_COLLECTION) < count(lite, CHUNKS_COLLECTION)
        target.upsert = upsert
        copied = move_store(lite, target, page=400)
        assert copied == {CHUNKS_COLLECTION: count(lite, CHUNKS_COLLECTION), STORIES_COLLECTION: len(STORY_IDS),
                          JOBS_COLLECTION: 1}
        assert_same_rows(snapshot(lite, target), snapshot(target, target))
    finally:
        close_client(lite, source)
        close_client(target, server)


def test_a_target_that_holds_more_than_the_source_is_reported(source, fresh_milvus_server):
    server = fresh_milvus_server.uri
    target = opened(server)
    try:
        StoryLedger(target).write_states([StoryOutcome(99, "skipped", "Not from this store", "", "title only")], [], 1)
    finally:
        close_client(target, server)
    result = move(source, server)
    assert result.returncode == 1
    assert (f"hn_stories: {len(STORY_IDS)} rows in the source, {len(STORY_IDS) + 1} in the target: the target holds "
            "rows the source does not") in result.stderr
    with pytest.raises(MoveIncomplete, match="it is not a hn_ingest store"):
        empty = open_client(server)
        try:
            empty.drop_collection(STORIES_COLLECTION)
            move_store(empty, empty)
        finally:
            close_client(empty, server)
