"""The chunk writer: the write protocol of a batch, idempotent under retries and crashes.

A batch is written chunks first (upserts: a key written again replaces its row), then the chunks that
are no longer part of a story deleted (a shorter page's tail, comments gone since), then the latest
points and comment counts spread over the story's rows, then the story states, last: a crash in between
leaves the stories not marked ingested, so the next run writes them again over the same keys.
Lifecycle removals (a story killed or deleted on HN) go through the same writer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np

from include.records import Chunk, StoryOutcome, ThreadOutcome, chunk_id, chunk_key
from include.store.collections import CHUNKS_COLLECTION, WRITE_SLICE, clip, domain_of, query_all
from include.store.ledger import StoryLedger
from include.store.schema import StoreSchema

_MAX_TEXT = 16_000  # VARCHAR limits are in bytes: leave room for multi-byte characters


class ChunkWriter:
    """Writes batches into `hn_chunks`, and their states through the `StoryLedger`, last."""

    def __init__(self, client, ledger: StoryLedger, schema: StoreSchema) -> None:
        self.client = client
        self.ledger = ledger
        self.schema = schema

    def write_batch(self, chunks: Sequence[Chunk], vectors: np.ndarray, outcomes: Sequence[StoryOutcome],
                    threads: Sequence[ThreadOutcome] = (), removed: dict[int, str] | None = None) -> int:
        """Write a batch idempotently and return the number of chunk rows upserted.

        `removed`: stories killed or deleted on HN since they were stored (story id → why)."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        now = int(time.time())
        # Points and comment counts grow for a day or two: a thread read gives a story's latest.
        latest = {t.story_id: (t.points, t.comments) for t in threads if t.points}
        rows = [_chunk_row(c, vector, latest, now) for c, vector in zip(chunks, vectors, strict=False)]
        for start in range(0, len(rows), WRITE_SLICE):
            self.client.upsert(CHUNKS_COLLECTION, rows[start : start + WRITE_SLICE])
        rewritten = [o for o in outcomes if o.status == "ingested" and not o.unchanged]
        if rewritten:
            # A story that now has fewer chunks than its state says it had loses the tail, by key (a
            # delete by filter is a pass over every chunk on Milvus Lite).
            before = self.ledger.states([o.story_id for o in rewritten])
            tail = [chunk_id(o.story_id, i) for o in rewritten
                    for i in range(o.chunk_count, int(before.get(o.story_id, {}).get("chunk_count", 0)))]
            for start in range(0, len(tail), WRITE_SLICE):
                self.client.delete(CHUNKS_COLLECTION, filter=f"id in {tail[start : start + WRITE_SLICE]}")
        gone = [key for thread in threads for key in thread.stale_ids]
        for start in range(0, len(gone), WRITE_SLICE):
            self.client.delete(CHUNKS_COLLECTION, filter=f"id in {gone[start : start + WRITE_SLICE]}")
        self._update_story_numbers(latest)
        self.ledger.write_states(outcomes, threads, now)
        self.remove_stories(removed or {})
        return len(rows)

    def remove_stories(self, reasons: dict[int, str]) -> None:
        """Stories killed or deleted on HN: their chunks go, their state says why (status `removed`)."""
        if not reasons:
            return
        self.client.delete(CHUNKS_COLLECTION, filter=f"story_id in {sorted(int(i) for i in reasons)}")
        self.ledger.mark_removed(reasons, int(time.time()))

    def comment_hashes(self, story_ids: Iterable[int]) -> dict[int, dict[int, str]]:
        """Story id → {chunk key: content hash} of its comment chunks: a refresh embeds only what changed."""
        ids = sorted({int(i) for i in story_ids})
        found: dict[int, dict[int, str]] = {i: {} for i in ids}
        for start in range(0, len(ids), 1000):
            filter_ = f'kind == "comment" and story_id in {ids[start : start + 1000]}'
            for row in query_all(self.client, CHUNKS_COLLECTION, filter_, ["id", "story_id", "content_hash"]):
                found[int(row["story_id"])][int(row["id"])] = row["content_hash"]
        return found

    def _update_story_numbers(self, latest: dict[int, tuple[int, int]]) -> None:
        """Give every chunk row of these stories their latest points and comment count, so a `min_points`
        filter and a search hit see today's numbers. Rows are rewritten whole (vectors kept): a partial
        update is not on every backend. Only rows that differ are read; a story's rows fit in memory.

        A story not ingested before has no older rows: all of its rows are in this batch, written with
        these numbers, so it costs no query (on Milvus Lite each is a pass over every chunk)."""
        before = self.ledger.states(latest) if latest else {}
        latest = {i: numbers for i, numbers in latest.items() if before.get(i, {}).get("status") == "ingested"}
        fields = self.schema.stored_fields(CHUNKS_COLLECTION) if latest else []
        for story_id, (points, comments) in latest.items():
            filter_ = f"story_id == {int(story_id)} and (points != {int(points)} or comments != {int(comments)})"
            rows = [{**row, "points": points, "comments": comments}
                    for row in query_all(self.client, CHUNKS_COLLECTION, filter_, fields, WRITE_SLICE)]
            for start in range(0, len(rows), WRITE_SLICE):
                self.client.upsert(CHUNKS_COLLECTION, rows[start : start + WRITE_SLICE])


def _chunk_row(c: Chunk, vector: np.ndarray, latest: dict[int, tuple[int, int]], now: int) -> dict:
    return {
        "id": chunk_key(c),
        "story_id": c.story_id,
        "chunk_index": c.chunk_index,
        "title": clip(c.title, 2000),
        "url": clip(c.url, 4000),
        "text": clip(c.text, _MAX_TEXT),
        "ingested_at": now,
        "embedding": vector.tolist(),
        "kind": c.kind,
        "posted_at": c.posted_at,
        "points": latest.get(c.story_id, (c.points,))[0],
        "comments": latest.get(c.story_id, (0, c.comments))[1],
        "domain": clip(domain_of(c.url), 250),
        "comment_id": c.comment_id,
        "author": clip(c.author, 250),
        "thread_path": clip(c.thread_path, 4000),
        "content_hash": c.content_hash,
    }
