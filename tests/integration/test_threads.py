"""Comment threads read from the replay (Algolia items, and the Firebase walk when that fails), written
to a real store and refreshed: only new or changed comments are embedded, gone ones are deleted, a huge
thread goes in slices. On a Milvus server too, where a second row under a new key would be counted."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from include.config import ChunkConfig, ThreadConfig
from include.hn.client import HackerNewsClient
from include.parse.chunking import TokenCounter
from include.pipeline.extract import ExtractedBatch, extract_threads
from include.records import Chunk, StoryOutcome
from include.store import ChunkStore
from include.store.client import close_client, open_client
from tests.replay_server import ReplayServer, load_corpus, send

BIG = 25576113  # a real story of the corpus with 212 live comments


@pytest.fixture(scope="module")
def counter():
    return TokenCounter("all-MiniLM-L6-v2")


@pytest.fixture
def replay(require_corpus):
    replay = ReplayServer()
    load_corpus(replay, url_stories=30, text_posts=0, dead=0, deleted=0, comments=True)
    with replay:
        yield replay


@pytest.fixture(params=["lite", "server"])
def store(request, tmp_path):
    uri = str(tmp_path / "milvus.db") if request.param == "lite" else request.getfixturevalue("fresh_milvus_server").uri
    client = open_client(uri)
    store = ChunkStore(client)
    store.schema.ensure_collections()
    yield store
    close_client(client, uri)


def threaded_stories(replay: ReplayServer, fewest: int = 3, most: int = 40) -> list[int]:
    return [i for i, item in replay.items.items() if item.get("type") == "story"
            and fewest <= count_comments(replay, i) <= most]


def count_comments(replay: ReplayServer, story_id: int) -> int:
    pending, seen = list(replay.items[story_id].get("kids") or []), 0
    while pending:
        item = replay.items.get(pending.pop())
        if item:
            seen += 1
            pending.extend(item.get("kids") or [])
    return seen


def read_and_write(store, replay, counter, story_ids, config=ThreadConfig(refresh_after=(3600,))) -> ExtractedBatch:
    """What extract_batch and write_batch do for a batch of thread refreshes."""
    batch = ExtractedBatch()
    extract_threads(batch, story_ids, store.writer.comment_hashes(story_ids), HackerNewsClient(replay.api_url, replay.algolia_url),
                    config, ChunkConfig(), counter)
    rng = np.random.default_rng(len(batch.chunks))
    store.writer.write_batch(batch.chunks, rng.normal(size=(len(batch.chunks), 384)).astype(np.float32), [], batch.threads)
    return batch


def comment_rows(store, story_id):
    return [r for r in store.reader.chunks_of(story_id) if r["kind"] == "comment"]


def ingested(store, story_ids, posted_at=1):
    store.writer.write_batch([], np.zeros((0, 384), np.float32),
                      [StoryOutcome(i, "ingested", f"Story {i}", "https://example.com", chunk_count=0, posted_at=posted_at)
                       for i in story_ids])


def test_the_firebase_walk_reads_the_same_thread_as_algolia(replay, counter):
    from include.hn.threads import read_thread

    story = threaded_stories(replay)[0]
    hn = HackerNewsClient(replay.api_url, replay.algolia_url)
    by_algolia = read_thread(hn, story, "T", ThreadConfig())
    replay.routes[f"/api/v1/items/{story}"] = lambda request: send(request, 503, b"down", "text/plain")
    by_items = read_thread(hn, story, "T", ThreadConfig())
    assert by_items == by_algolia and len(by_algolia.comments) >= 2


def test_a_refresh_embeds_new_comments_only_and_removes_deleted_ones(replay, store, counter):
    stories = threaded_stories(replay)[:3]
    ingested(store, stories)
    first = read_and_write(store, replay, counter, stories)
    expected = sum(count_comments(replay, i) for i in stories)
    assert {c.comment_id for c in first.chunks} and len({c.comment_id for c in first.chunks}) <= expected
    assert store.reader.count() == len(first.chunks) == sum(t.comment_chunks for t in first.threads)
    states = store.ledger.states(stories)
    assert all(states[i]["comment_chunks"] == len(comment_rows(store, i)) > 0 for i in stories)
    assert all(states[i]["thread_read_at"] > 0 and states[i]["thread_steps"] == 1 for i in stories)

    # Unchanged thread: nothing to embed, nothing removed.
    again = read_and_write(store, replay, counter, stories)
    assert again.chunks == [] and all(t.stale_ids == [] for t in again.threads)

    # A new reply, and a leaf comment deleted (as HN shows it: the item says deleted).
    story = stories[0]
    parent = replay.items[story]["kids"][0]
    new_id = max(replay.items) + 1
    replay.add_item({"id": new_id, "type": "comment", "by": "newcomer", "parent": parent, "time": 1609300000,
                     "text": "A fresh reply about exactly this."})
    replay.items[parent] = {**copy.deepcopy(replay.items[parent]),
                            "kids": [new_id, *(replay.items[parent].get("kids") or [])]}
    leaf = next(r["comment_id"] for r in comment_rows(store, story)
                if not replay.items[r["comment_id"]].get("kids") and r["comment_id"] != new_id)
    replay.items[leaf] = {"id": leaf, "type": "comment", "deleted": True, "parent": replay.items[leaf]["parent"],
                          "time": replay.items[leaf]["time"]}
    before = store.reader.count()
    gone = len([r for r in comment_rows(store, story) if r["comment_id"] == leaf])
    refreshed = read_and_write(store, replay, counter, stories)
    assert [c.comment_id for c in refreshed.chunks] == [new_id]
    assert store.reader.count() == before + 1 - gone
    rows = comment_rows(store, story)
    assert leaf not in {r["comment_id"] for r in rows}
    new = [r for r in rows if r["comment_id"] == new_id][0]
    assert new["author"] == "newcomer" and new["thread_path"] == f"{parent}/{new_id}" and new["posted_at"] == 1609300000
    assert new["text"].startswith(f"Comment by newcomer, replying to {replay.items[parent]['by']}: ")
    keys = store.reader.all_keys()
    assert store.reader.count() == len({k[0] for k in keys}) == len({k[1:] for k in keys})  # no duplicate rows
    assert store.ledger.states([story])[story]["comment_chunks"] == len(rows)


def test_a_huge_thread_goes_in_slices_until_whole(replay, store, counter):
    ingested(store, [BIG])
    config = ThreadConfig(refresh_after=(3600,), slice_chunks=80)
    sizes = []
    for _ in range(4):
        batch = read_and_write(store, replay, counter, [BIG], config)
        sizes.append(len(batch.chunks))
        due = store.ledger.due_threads(config, now=2, limit=10)
        if batch.threads[0].complete:
            assert BIG not in due
            break
        assert BIG in due  # the rest of the thread goes in the next run
    assert sizes[:2] == [80, 80] and sum(sizes) == store.reader.count() > 200
    assert store.ledger.states([BIG])[BIG]["comment_chunks"] == store.reader.count()


def test_threads_are_due_on_a_decaying_schedule(store):
    hour = 3600
    config = ThreadConfig(refresh_after=(hour, 6 * hour))
    ingested(store, [1, 2, 3], posted_at=1_000_000)
    assert store.ledger.due_threads(config, 1_000_000 + 10, 10) == [1, 2, 3]  # never read
    from include.records import ThreadOutcome
    for story, read_at in ((1, 1_000_000 + 10), (2, 1_000_000 + 2 * hour), (3, 1_000_000 + 7 * hour)):
        outcome = ThreadOutcome(story, read_at, True, 0, 0, [], steps_passed=config.steps_passed(1_000_000, read_at))
        store.writer.write_batch([], np.zeros((0, 384), np.float32), [], [outcome])
    assert [store.ledger.states([i])[i]["thread_steps"] for i in (1, 2, 3)] == [0, 1, 2]
    assert store.ledger.due_threads(config, 1_000_000 + hour + 1, 10) == [1]
    assert store.ledger.due_threads(config, 1_000_000 + 6 * hour + 1, 10) == [1, 2]
    assert store.ledger.due_threads(config, 1_000_000 + 100 * hour, 1) == [1]  # bounded per run
    assert json.dumps(store.ledger.due_threads(config, 1_000_000 + 100 * hour, 10)) == "[1, 2]"


def test_a_thread_read_brings_its_storys_points_and_comment_count_to_every_chunk(replay, store, counter):
    story = threaded_stories(replay)[0]
    page = [Chunk(story, i, "A story", "https://example.com/a", f"Page text part {i} about lighthouses.",
                  posted_at=1, points=1, comments=0) for i in range(3)]
    page_vectors = np.random.default_rng(7).normal(size=(3, 384)).astype(np.float32)
    store.writer.write_batch(page, page_vectors, [StoryOutcome(story, "ingested", "A story", "https://example.com/a",
                                                        chunk_count=3, posted_at=1, points=1)])
    first = read_and_write(store, replay, counter, [story])
    points = replay.items[story]["score"]
    assert points > 1

    def numbers():
        return {(r["points"], r["comments"]) for r in store.client.query(
            "hn_chunks", filter=f"story_id == {story}", output_fields=["points", "comments"])}

    assert numbers() == {(points, first.threads[0].comments)} and first.threads[0].comments > 0
    # The story gains points on HN: the next read rewrites the numbers and embeds nothing.
    replay.items[story] = {**replay.items[story], "score": points + 100}
    again = read_and_write(store, replay, counter, [story])
    assert again.chunks == [] and numbers() == {(points + 100, first.threads[0].comments)}
    assert store.ledger.states([story])[story]["points"] == points + 100
    # Rewritten whole: the same rows, vectors and full text, found by a `min_points` filter.
    assert store.reader.count() == 3 + first.threads[0].comment_chunks == len({k[0] for k in store.reader.all_keys()})
    stored = store.client.query("hn_chunks", filter=f'story_id == {story} and kind == "page"',
                                output_fields=["chunk_index", "embedding"])
    for row in stored:
        assert np.allclose(row["embedding"], page_vectors[row["chunk_index"]], atol=1e-6)
    assert {h["story_id"] for h in store.reader.dense(page_vectors[0], 3, f"points >= {points + 100}")} == {story}
    assert store.reader.dense(page_vectors[0], 3, f"points > {points + 100}") == []
    if store.schema.has_full_text():  # the BM25 side is computed again from the rewritten text
        assert {h["story_id"] for h in store.reader.text("lighthouses", 3, f"points >= {points + 100}")} == {story}
