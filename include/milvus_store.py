"""The project's two Milvus collections and every read and write of them.

- `hn_chunks`: one row per chunk, primary key `story_id * 100000 + chunk_index`, so writing a story
  again replaces its rows instead of adding new ones.
- `hn_stories`: one row per story seen, with its status (ingested, skipped, failed), the reason and
  the number of failed attempts. It is the pipeline's progress state, kept beside the data.

A batch is written chunks first, then stale chunks deleted, then story states: a crash in between
leaves the stories not marked ingested, so the next run writes them again over the same keys.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence

import numpy as np

from include.config import CHUNKS_COLLECTION, EMBEDDING_DIM, MAX_FAILED_ATTEMPTS, STORIES_COLLECTION
from include.records import Chunk, StoryOutcome

CHUNK_ID_STRIDE = 100_000  # chunk_index < stride; ChunkConfig.max_chunks_per_story keeps it so
# IVF lists: 128 suits up to ~1M chunks; about 4 * sqrt(expected chunks) beyond (docs/scaling.md). Read
# when the index is created, which happens once: a new value needs the index dropped and rebuilt.
IVF_NLIST = int(os.environ.get("HN_INGEST_IVF_NLIST", "128"))
SEARCH_NPROBE = int(os.environ.get("HN_INGEST_SEARCH_NPROBE", "32"))
_MAX_TEXT = 16_000  # VARCHAR limits are in bytes: leave room for multi-byte characters
_WRITE_SLICE = 1_000
# A server's default ("Bounded") lets a read miss writes of the last seconds: a run could take a story
# the previous run has just ingested for new, or a write its own earlier state. Reads see every write.
CONSISTENCY = "Strong"
_STORY_FIELDS = ["story_id", "status", "stage", "reason", "attempts", "chunk_count", "title", "url", "updated_at"]


def chunk_id(story_id: int, chunk_index: int) -> int:
    return story_id * CHUNK_ID_STRIDE + chunk_index


class ChunkStore:
    """Reads and writes `hn_chunks` and `hn_stories` through a `pymilvus.MilvusClient`."""

    def __init__(self, client) -> None:
        self.client = client
        _quiet_lite_iterator_noise()

    # -- schema -------------------------------------------------------------------------------

    def ensure_collections(self) -> None:
        """Create the collections and the IVF_FLAT index when missing; never drop or rebuild."""
        from pymilvus import DataType, MilvusClient

        if not self.client.has_collection(CHUNKS_COLLECTION):
            schema = MilvusClient.create_schema(auto_id=False, description="Hacker News story chunks")
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("story_id", DataType.INT64)
            schema.add_field("chunk_index", DataType.INT64)
            schema.add_field("title", DataType.VARCHAR, max_length=2048)
            schema.add_field("url", DataType.VARCHAR, max_length=4096)
            schema.add_field("text", DataType.VARCHAR, max_length=65535)
            schema.add_field("ingested_at", DataType.INT64)
            schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=EMBEDDING_DIM)
            self.client.create_collection(CHUNKS_COLLECTION, schema=schema, consistency_level=CONSISTENCY)
        if not self.client.has_collection(STORIES_COLLECTION):
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
            # Milvus requires a vector field in every collection; this one is never searched.
            schema.add_field("unused_vector", DataType.FLOAT_VECTOR, dim=2)
            self.client.create_collection(STORIES_COLLECTION, schema=schema, consistency_level=CONSISTENCY)
        self._ensure_index(CHUNKS_COLLECTION, "embedding", "IVF_FLAT", "COSINE", {"nlist": IVF_NLIST})
        self._ensure_index(STORIES_COLLECTION, "unused_vector", "FLAT", "L2", {})
        for name in (CHUNKS_COLLECTION, STORIES_COLLECTION):
            self.client.load_collection(name)

    def _ensure_index(self, collection: str, field: str, index_type: str, metric: str, params: dict) -> None:
        if field in self.client.list_indexes(collection, field_name=field):
            return
        index_params = self.client.prepare_index_params()
        index_params.add_index(field_name=field, index_name=field, index_type=index_type, metric_type=metric,
                               params=params)
        self.client.create_index(collection, index_params)

    def index_type(self) -> str:
        return self.client.describe_index(CHUNKS_COLLECTION, "embedding")["index_type"]

    # -- writes -------------------------------------------------------------------------------

    def write_batch(self, chunks: Sequence[Chunk], vectors: np.ndarray, outcomes: Sequence[StoryOutcome]) -> int:
        """Write a batch idempotently and return the number of chunk rows upserted."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        now = int(time.time())
        rows = [
            {
                "id": chunk_id(c.story_id, c.chunk_index),
                "story_id": c.story_id,
                "chunk_index": c.chunk_index,
                "title": _clip(c.title, 2000),
                "url": _clip(c.url, 4000),
                "text": _clip(c.text, _MAX_TEXT),
                "ingested_at": now,
                "embedding": vector.tolist(),
            }
            for c, vector in zip(chunks, vectors, strict=False)
        ]
        for start in range(0, len(rows), _WRITE_SLICE):
            self.client.upsert(CHUNKS_COLLECTION, rows[start : start + _WRITE_SLICE])
        ingested = [o for o in outcomes if o.status == "ingested"]
        if ingested:
            # A story that now has fewer chunks than before loses the tail of its old ones.
            stale = " or ".join(f"(story_id == {o.story_id} and chunk_index >= {o.chunk_count})" for o in ingested)
            self.client.delete(CHUNKS_COLLECTION, filter=stale)
        self._write_states(outcomes, now)
        return len(rows)

    def _write_states(self, outcomes: Sequence[StoryOutcome], now: int) -> None:
        if not outcomes:
            return
        previous = self.states([o.story_id for o in outcomes])
        rows = []
        for outcome in outcomes:
            before = previous.get(outcome.story_id, {})
            row = {
                "story_id": outcome.story_id,
                "status": outcome.status,
                "stage": outcome.stage,
                "reason": _clip(outcome.reason, 4000),
                "attempts": 0,
                "chunk_count": outcome.chunk_count,
                "title": _clip(outcome.title, 2000),
                "url": _clip(outcome.url, 4000),
                "updated_at": now,
                "unused_vector": [0.0, 0.0],
            }
            if outcome.status == "failed":
                row["attempts"] = int(before.get("attempts", 0)) + 1
                if before.get("status") == "ingested":
                    # A refresh that fails keeps the story's earlier chunks searchable.
                    row.update(status="ingested", chunk_count=before["chunk_count"],
                               reason=_clip(f"refresh failed: {outcome.reason}", 4000))
            rows.append(row)
        self.client.upsert(STORIES_COLLECTION, rows)

    def delete_story(self, story_id: int) -> None:
        self.client.delete(CHUNKS_COLLECTION, filter=f"story_id == {int(story_id)}")
        self.client.delete(STORIES_COLLECTION, filter=f"story_id == {int(story_id)}")

    # -- reads --------------------------------------------------------------------------------

    def states(self, story_ids: Iterable[int]) -> dict[int, dict]:
        ids = sorted({int(i) for i in story_ids})
        found: dict[int, dict] = {}
        for start in range(0, len(ids), 1000):
            part = ids[start : start + 1000]
            for row in self.client.query(STORIES_COLLECTION, filter=f"story_id in {part}", output_fields=_STORY_FIELDS,
                                         consistency_level=CONSISTENCY):
                found[int(row["story_id"])] = dict(row)
        return found

    def story_ids_with_status(self, *statuses: str) -> list[int]:
        rows = self._query_all(STORIES_COLLECTION, f"status in {list(statuses)}", ["story_id"])
        return sorted(int(r["story_id"]) for r in rows)

    def retryable_failed_ids(self, max_attempts: int = MAX_FAILED_ATTEMPTS) -> list[int]:
        rows = self._query_all(STORIES_COLLECTION, f'status == "failed" and attempts < {max_attempts}', ["story_id"])
        return sorted(int(r["story_id"]) for r in rows)

    def story_rows(self, *statuses: str) -> list[dict]:
        filter_ = f"status in {list(statuses)}" if statuses else "story_id >= 0"
        return sorted(self._query_all(STORIES_COLLECTION, filter_, _STORY_FIELDS), key=lambda r: r["story_id"])

    def chunk_count(self, story_id: int | None = None) -> int:
        filter_ = "" if story_id is None else f"story_id == {int(story_id)}"
        rows = self.client.query(CHUNKS_COLLECTION, filter=filter_, output_fields=["count(*)"], consistency_level=CONSISTENCY)
        return int(rows[0]["count(*)"])

    def chunks_of(self, story_id: int) -> list[dict]:
        rows = self._query_all(CHUNKS_COLLECTION, f"story_id == {int(story_id)}",
                               ["id", "story_id", "chunk_index", "title", "text", "ingested_at"])
        return sorted(rows, key=lambda r: r["chunk_index"])

    def all_chunk_keys(self) -> list[tuple[int, int, int]]:
        """(id, story_id, chunk_index) of every chunk row: for duplicate checks."""
        rows = self._query_all(CHUNKS_COLLECTION, "id >= 0", ["id", "story_id", "chunk_index"])
        return [(int(r["id"]), int(r["story_id"]), int(r["chunk_index"])) for r in rows]

    def search(self, vector: np.ndarray, k: int = 5) -> list[dict]:
        hits = self.client.search(
            CHUNKS_COLLECTION,
            data=[vector.tolist()],
            limit=k,
            output_fields=["story_id", "chunk_index", "title", "url", "text"],
            search_params={"metric_type": "COSINE", "params": {"nprobe": SEARCH_NPROBE}},
        )[0]
        return [{"score": float(hit["distance"]), **hit["entity"]} for hit in hits]

    def _query_all(self, collection: str, filter_: str, fields: list[str], page: int = 10_000) -> list[dict]:
        rows: list[dict] = []
        iterator = self.client.query_iterator(collection, batch_size=page, filter=filter_, output_fields=fields,
                                              consistency_level=CONSISTENCY)
        try:
            while batch := iterator.next():
                rows.extend(dict(r) for r in batch)
        finally:
            iterator.close()
        return rows


def _quiet_lite_iterator_noise() -> None:
    """Milvus Lite does not implement AllocTimestamp, which query iterators ask for first; pymilvus
    then uses a client-side timestamp, which is right for a single writer. Both sides log it loudly
    on every iterator: drop exactly those two messages."""
    logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
    grpc_log = logging.getLogger("grpc._server")
    if not any(isinstance(f, _UnimplementedFilter) for f in grpc_log.filters):
        grpc_log.addFilter(_UnimplementedFilter())


class _UnimplementedFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in record.getMessage() and not (
            record.exc_info and isinstance(record.exc_info[1], NotImplementedError))


def _clip(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")
    return text if len(encoded) <= max_bytes else encoded[:max_bytes].decode("utf-8", errors="ignore")
