"""Which stories a run takes, against a real Milvus Lite store and the replay's Algolia and Firebase APIs."""

from __future__ import annotations

import numpy as np
import pytest

from include.hn.client import HackerNewsClient
from include.pipeline.planning import Window, run_mode, select_story_ids
from include.records import Chunk, StoryOutcome
from include.store import ChunkStore
from include.store.client import close_client, open_client
from tests.replay_server import ReplayServer

STORIES = {101: 1_000, 102: 1_010, 103: 1_020, 104: 5_000}  # id -> creation time


@pytest.fixture
def world(tmp_path):
    replay = ReplayServer()
    for story_id, created in STORIES.items():
        replay.add_item({"id": story_id, "type": "story", "time": created, "title": f"Story {story_id}",
                         "url": f"https://example.com/{story_id}", "by": "someone", "score": 1})
    client = open_client(str(tmp_path / "milvus.db"))
    store = ChunkStore(client)
    store.schema.ensure_collections()
    # 101 is ingested, 102 skipped: a plain backfill leaves them alone.
    store.writer.write_batch([Chunk(101, 0, "Story 101", "https://example.com/101", "text")],
                      np.ones((1, 384), np.float32) / np.sqrt(384),
                      [StoryOutcome(101, "ingested", "Story 101", "https://example.com/101", chunk_count=1),
                       StoryOutcome(102, "skipped", reason="story 102: dead")])
    with replay:
        yield HackerNewsClient(base_url=replay.api_url, algolia_url=replay.algolia_url), store
    close_client(client, str(tmp_path / "milvus.db"))


@pytest.mark.parametrize(("run_type", "reindex", "mode"), [
    ("backfill", True, "backfill"), ("backfill", False, "backfill"), ("manual", True, "reindex"),
    ("scheduled", True, "reindex"), ("scheduled", False, "new"), ("manual", False, "new")])
def test_run_modes(run_type, reindex, mode):
    assert run_mode(run_type, reindex) == mode


def test_a_backfill_with_reindex_takes_its_own_window_only(world):
    hn, store = world
    window = Window(1_000, 1_030)
    assert select_story_ids("backfill", hn, store, window) == [103]
    # reindex=true on a backfill run: every story of the interval, done or not, and nothing else.
    assert select_story_ids("backfill", hn, store, window, include_done=True) == [101, 102, 103]


def test_only_stories_written_before_cost_a_comment_query(world, monkeypatch, tmp_path):
    """Staging what the store holds of each thread: a new story has no comment chunks, so it is not looked
    up (on Milvus Lite each lookup is a pass over every chunk); a known one is."""
    from include.pipeline.planning import _stage_stored_threads
    from include.pipeline.staging import read_json

    _, store = world
    monkeypatch.setenv("HN_INGEST_DATA_DIR", str(tmp_path / "data"))
    asked: list[list[int]] = []
    real = store.writer.comment_hashes
    monkeypatch.setattr(store.writer, "comment_hashes", lambda ids: asked.append(sorted(ids)) or real(ids))
    batches = [{"number": 0, "story_ids": [103, 104], "thread_ids": [103, 104]},
               {"number": 1, "story_ids": [101, 103], "thread_ids": [101, 103]}]
    _stage_stored_threads(batches, store, "run")
    assert asked == [[101]]
    assert read_json(batches[0]["stored_threads"]) == {"103": {}, "104": {}}
    assert read_json(batches[1]["stored_threads"]) == {"101": {}, "103": {}}
