"""/status and the status CLI at a size where one page cannot hold the candidates: still the newest."""

from __future__ import annotations

from include.ops.status import store_summary
from include.records import StoryOutcome
from include.store import ChunkStore
from include.store.client import close_client, open_client
from include.store.ledger import SCAN_LIMIT

NOW = 1_800_000_000


def test_the_latest_problems_are_the_newest_even_past_a_page(tmp_path):
    """More failed stories in the last hour than one page reads (SCAN_LIMIT); the newest have the highest
    ids, so a page in key order misses them: the summary must still list them, newest first."""
    uri = str(tmp_path / "milvus.db")
    client = open_client(uri)
    try:
        store = ChunkStore(client)
        store.schema.ensure_collections()
        stories = SCAN_LIMIT + 2_000
        per_second = 10
        for second in range(stories // per_second):
            ids = range(1 + second * per_second, 1 + (second + 1) * per_second)
            store.ledger.write_states([StoryOutcome(i, "failed", f"Story {i}", reason=f"story {i}: HTTP 503",
                                                    stage="fetch") for i in ids], [],
                                      now=NOW - 3000 + second)
        store.ledger.write_states([StoryOutcome(10**8, "ingested", "Fresh", "https://e.com", chunk_count=1,
                                                posted_at=NOW - 50)], [], now=NOW - 20)
        summary = store_summary(store, NOW + 1)
        listed = [p["story_id"] for p in summary["problems"]]
        assert summary["stories"] == {"failed": stories, "ingested": 1} and summary["problems_total"] == stories
        assert summary["freshness"]["newest_story_posted_at"] == NOW - 50
        assert summary["freshness"]["last_ingest_at"] == NOW - 20
        assert listed == list(range(stories, stories - 100, -1)), listed[:12]
    finally:
        close_client(client, uri)
