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
