"""The project's two Milvus collections and every read and write of them.

- `hn_chunks`: one row per chunk, primary key `story_id * 100000 + chunk_index` for a page chunk and
  `comment_id * 100000 + part` for a comment chunk (HN ids are one sequence: keys never collide), so
  writing a story or a comment again replaces its rows instead of adding new ones. `kind` tells them apart. Besides the dense embedding (IVF_FLAT), the text
  feeds Milvus's BM25 function into a sparse field for full-text search, where the backend has it
  (Milvus Lite, Milvus 2.5+); the story's metadata rides on each chunk so searches can filter by it.
- `hn_stories`: one row per story seen, with its status (ingested, skipped, failed), the reason, the
  failed attempts and when the next may run, the page's validators (ETag, Last-Modified) for a
  conditional refetch, the story's time, points and comment count, and when its thread was read. It is the pipeline's progress state, kept beside the data.

Each collection carries its schema version in the collection property `hn_ingest.schema_version`;
`ensure_collections` migrates an older store in place (see `_migrate_by_copy`).

A batch is written chunks first, then stale chunks deleted, then story states: a crash in between
leaves the stories not marked ingested, so the next run writes them again over the same keys.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import urlsplit

import numpy as np

from include.config import CHUNKS_COLLECTION, EMBEDDING_DIM, STORIES_COLLECTION, RetryPolicy
from include.records import Chunk, StoryOutcome, ThreadOutcome

log = logging.getLogger(__name__)

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
_STORY_FIELDS = ["story_id", "status", "stage", "reason", "attempts", "chunk_count", "title", "url", "updated_at",
                 "next_attempt_at", "etag", "last_modified", "fingerprint", "posted_at", "points", "comments",
                 "thread_read_at", "thread_steps", "comment_chunks", "item_hash"]
_THREAD_FIELDS = ("thread_read_at", "thread_steps", "comment_chunks")
VERSION_PROPERTY = "hn_ingest.schema_version"
# v1: the first release. v2: hn_stories gains next_attempt_at, etag, last_modified, fingerprint;
# hn_chunks gains BM25 full text and the story's kind, posted_at, points, comments and domain.
# v3: comment threads. hn_chunks gains comment_id, author, thread_path, content_hash; hn_stories gains
# posted_at, points, comments, the item's hash (edits) and the thread's read time, refresh steps done and
# comment chunk count.
SCHEMA_VERSIONS = {CHUNKS_COLLECTION: 3, STORIES_COLLECTION: 3}
# Fields an older row lacks, and what they mean for it: no retry scheduled, no validators known; a
# chunk's story time and counts unknown (0) until the story is ingested again; a page chunk has no
# comment fields; the thread never read (so it is read by a later run). A chunk's domain is its URL's.
_DEFAULTS = {
    STORIES_COLLECTION: {"next_attempt_at": 0, "etag": "", "last_modified": "", "fingerprint": "", "posted_at": 0,
                         "points": 0, "comments": 0, "thread_read_at": 0, "thread_steps": 0, "comment_chunks": 0,
                         "item_hash": ""},
    CHUNKS_COLLECTION: {"kind": "page", "posted_at": 0, "points": 0, "comments": 0, "comment_id": 0, "author": "",
                        "thread_path": "", "content_hash": ""},
}
FULL_TEXT_FIELD = "text_sparse"
CHUNK_FIELDS = ["story_id", "chunk_index", "title", "url", "text", "kind", "posted_at", "points", "comments", "domain",
                "comment_id", "author", "thread_path"]


def chunk_id(item_id: int, chunk_index: int) -> int:
    return item_id * CHUNK_ID_STRIDE + chunk_index


def chunk_key(chunk: Chunk) -> int:
    """A page chunk is keyed by its story, a comment chunk by its comment."""
    return chunk_id(chunk.comment_id or chunk.story_id, chunk.chunk_index)


class ChunkStore:
    """Reads and writes `hn_chunks` and `hn_stories` through a `pymilvus.MilvusClient`."""

    def __init__(self, client, retry: RetryPolicy | None = None) -> None:
        self.client = client
        self.retry = retry or RetryPolicy()
        self._full_text: bool | None = None
        _quiet_lite_iterator_noise()

    # -- schema -------------------------------------------------------------------------------

    def ensure_collections(self) -> None:
        """Create the collections and the IVF_FLAT index when missing, migrate an older schema in place;
        never drop data or rebuild an index that exists."""
        for name in SCHEMA_VERSIONS:
            self._finish_interrupted_migration(name)
            if not self.client.has_collection(name):
                self._create(name)
                self.set_schema_version(name, SCHEMA_VERSIONS[name])
            elif (found := self.schema_version(name)) < SCHEMA_VERSIONS[name]:
                self._migrate_by_copy(name, found)
            self._ensure_indexes(name)
            self.client.load_collection(name)

    def _create(self, name: str, collection: str | None = None) -> None:
        """Create `collection` (default `name`) with `name`'s schema. A server older than 2.5 has no BM25
        function and drops it silently from the schema: then the chunks go without full text."""
        collection = collection or name
        full_text = name == CHUNKS_COLLECTION
        schema = chunks_schema(full_text) if full_text else _SCHEMAS[name]()
        self.client.create_collection(collection, schema=schema, consistency_level=CONSISTENCY)
        if full_text and not self.client.describe_collection(collection).get("functions"):
            self.client.drop_collection(collection)
            log.warning("this Milvus server has no BM25 full-text search (Milvus 2.5+ or Milvus Lite has it): "
                        "%s is created for dense search only; text and hybrid searches fall back to dense", name)
            self.client.create_collection(collection, schema=chunks_schema(False), consistency_level=CONSISTENCY)
        self._full_text = None

    def _ensure_indexes(self, name: str, collection: str | None = None) -> None:
        collection = collection or name
        if name == CHUNKS_COLLECTION:
            self._ensure_index(collection, "embedding", "IVF_FLAT", "COSINE", {"nlist": IVF_NLIST})
            if self._collection_has_full_text(collection):
                self._ensure_index(collection, FULL_TEXT_FIELD, "SPARSE_INVERTED_INDEX", "BM25", {})
        else:
            self._ensure_index(collection, "unused_vector", "FLAT", "L2", {})

    def _collection_has_full_text(self, collection: str) -> bool:
        return bool(self.client.describe_collection(collection).get("functions"))

    def has_full_text(self) -> bool:
        """Whether the chunks can be searched by BM25 (the backend had the function when they were created)."""
        if self._full_text is None:
            self._full_text = self._collection_has_full_text(CHUNKS_COLLECTION)
        return self._full_text

    def schema_version(self, name: str) -> int:
        """The collection's version property; a collection without one is from the first release."""
        properties = self.client.describe_collection(name).get("properties") or {}
        return int(properties.get(VERSION_PROPERTY, 1))

    def set_schema_version(self, name: str, version: int) -> None:
        self.client.alter_collection_properties(name, properties={VERSION_PROPERTY: str(version)})

    def _migrate_by_copy(self, name: str, found: int) -> None:
        """Rebuild `name` with the current schema: copy every row into `<name>__migrating` with the new
        fields filled, check the count, then swap. Milvus Lite cannot add a field to a collection
        (and a 2.3 server neither), so a copy is the one path that works on every backend.

        A crash before the swap leaves the old collection whole (the copy is dropped and redone); a crash
        inside the swap leaves only the complete copy, which `_finish_interrupted_migration` renames.
        """
        target = SCHEMA_VERSIONS[name]
        temp = f"{name}__migrating"
        if self.client.has_collection(temp):
            self.client.drop_collection(temp)
        self.client.load_collection(name)
        fields = self._stored_fields(name)
        log.info("migrating %s from schema v%d to v%d", name, found, target)
        self._create(name, temp)
        self._ensure_indexes(name, temp)
        self.client.load_collection(temp)
        read = 0
        # Streamed a page at a time: a chunks collection with its vectors need not fit in memory.
        for page in self._pages(name, f"{_PRIMARY_KEY[name]} >= 0", fields, _WRITE_SLICE):
            self.client.insert(temp, [_with_new_fields(name, row) for row in page])
            read += len(page)
        copied = self.client.query(temp, filter="", output_fields=["count(*)"], consistency_level=CONSISTENCY)
        if int(copied[0]["count(*)"]) != read:
            raise RuntimeError(f"migration of {name} copied {copied[0]['count(*)']} of {read} rows; "
                               f"{name} is untouched, {temp} can be dropped")
        self.set_schema_version(temp, target)
        self.client.drop_collection(name)
        self.client.rename_collection(temp, name)
        self._full_text = None
        log.info("migrated %s to schema v%d: %d rows kept", name, target, read)

    def _stored_fields(self, name: str) -> list[str]:
        """The fields a row is written with: a function's output (the BM25 sparse vector) is computed on
        insert, never copied."""
        described = self.client.describe_collection(name)
        generated = {f for fn in described.get("functions") or [] for f in fn["output_field_names"]}
        return [f["name"] for f in described["fields"] if f["name"] not in generated]

    def _finish_interrupted_migration(self, name: str) -> None:
        temp = f"{name}__migrating"
        if self.client.has_collection(temp) and not self.client.has_collection(name):
            log.warning("finishing an interrupted migration: %s becomes %s", temp, name)
            self.client.rename_collection(temp, name)

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

    def write_batch(self, chunks: Sequence[Chunk], vectors: np.ndarray, outcomes: Sequence[StoryOutcome],
                    threads: Sequence[ThreadOutcome] = ()) -> int:
        """Write a batch idempotently and return the number of chunk rows upserted."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        now = int(time.time())
        # Points and comment counts grow for a day or two: a thread read gives a story's latest.
        latest = {t.story_id: (t.points, t.comments) for t in threads if t.points}
        rows = [
            {
                "id": chunk_key(c),
                "story_id": c.story_id,
                "chunk_index": c.chunk_index,
                "title": _clip(c.title, 2000),
                "url": _clip(c.url, 4000),
                "text": _clip(c.text, _MAX_TEXT),
                "ingested_at": now,
                "embedding": vector.tolist(),
                "kind": c.kind,
                "posted_at": c.posted_at,
                "points": latest.get(c.story_id, (c.points,))[0],
                "comments": latest.get(c.story_id, (0, c.comments))[1],
                "domain": _clip(domain_of(c.url), 250),
                "comment_id": c.comment_id,
                "author": _clip(c.author, 250),
                "thread_path": _clip(c.thread_path, 4000),
                "content_hash": c.content_hash,
            }
            for c, vector in zip(chunks, vectors, strict=False)
        ]
        for start in range(0, len(rows), _WRITE_SLICE):
            self.client.upsert(CHUNKS_COLLECTION, rows[start : start + _WRITE_SLICE])
        rewritten = [o for o in outcomes if o.status == "ingested" and not o.unchanged]
        if rewritten:
            # A story that now has fewer chunks than before loses the tail of its old ones.
            stale = " or ".join(f"(story_id == {o.story_id} and chunk_index >= {o.chunk_count})" for o in rewritten)
            self.client.delete(CHUNKS_COLLECTION, filter=f'kind == "page" and ({stale})')
        gone = [key for thread in threads for key in thread.stale_ids]
        for start in range(0, len(gone), _WRITE_SLICE):
            self.client.delete(CHUNKS_COLLECTION, filter=f"id in {gone[start : start + _WRITE_SLICE]}")
        self._update_story_numbers(latest)
        self._write_states(outcomes, threads, now)
        return len(rows)

    def _update_story_numbers(self, latest: dict[int, tuple[int, int]]) -> None:
        """Give every chunk row of these stories their latest points and comment count, so a `min_points`
        filter and a search hit see today's numbers. Rows are rewritten whole (vectors kept): a partial
        update is not on every backend. Only rows that differ are read; a story's rows fit in memory."""
        fields = self._stored_fields(CHUNKS_COLLECTION) if latest else []
        for story_id, (points, comments) in latest.items():
            filter_ = f"story_id == {int(story_id)} and (points != {int(points)} or comments != {int(comments)})"
            rows = [{**row, "points": points, "comments": comments}
                    for row in self._query_all(CHUNKS_COLLECTION, filter_, fields, _WRITE_SLICE)]
            for start in range(0, len(rows), _WRITE_SLICE):
                self.client.upsert(CHUNKS_COLLECTION, rows[start : start + _WRITE_SLICE])

    def _write_states(self, outcomes: Sequence[StoryOutcome], threads: Sequence[ThreadOutcome], now: int) -> None:
        """One row per story: its page outcome and its thread's, over what the row said before."""
        ids = [o.story_id for o in outcomes] + [t.story_id for t in threads]
        if not ids:
            return
        previous = self.states(ids)
        rows = {o.story_id: self._state_row(o, previous.get(o.story_id, {}), now) for o in outcomes}
        for thread in threads:
            row = rows.get(thread.story_id) or previous.get(thread.story_id)
            if row is None:
                continue  # a thread of a story with no state: nothing to attach it to
            rows[thread.story_id] = self._with_thread(dict(row), thread)
        self.client.upsert(STORIES_COLLECTION, [_with_new_fields(STORIES_COLLECTION, {**r, "unused_vector": [0.0, 0.0]})
                                                for r in rows.values()])

    @staticmethod
    def _with_thread(row: dict, thread: ThreadOutcome) -> dict:
        row.update(comment_chunks=thread.comment_chunks, comments=thread.comments)
        if thread.points:
            row["points"] = thread.points
        if thread.posted_at and not row.get("posted_at"):  # a row from before v3 learns its story's time
            row["posted_at"] = thread.posted_at
        if thread.complete:  # an incomplete thread stays due: its next slice goes in the next run
            row.update(thread_read_at=thread.read_at, thread_steps=thread.steps_passed)
        return row

    def _state_row(self, outcome: StoryOutcome, before: dict, now: int) -> dict:
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
            "next_attempt_at": 0,
            "etag": _clip(outcome.etag, 1000),
            "last_modified": _clip(outcome.last_modified, 120),
            "fingerprint": outcome.fingerprint,
            "unused_vector": [0.0, 0.0],
            "posted_at": outcome.posted_at or int(before.get("posted_at", 0)),
            "points": outcome.points or int(before.get("points", 0)),
            "comments": outcome.comments or int(before.get("comments", 0)),
            "item_hash": outcome.item_hash or before.get("item_hash", ""),
            **{k: int(before.get(k, 0)) for k in _THREAD_FIELDS},
        }
        if outcome.unchanged:  # 304: the stored chunks stay as they are
            row["chunk_count"] = int(before.get("chunk_count", 0))
        if outcome.status == "failed":
            attempts = int(before.get("attempts", 0)) + (1 if outcome.attempted else 0)
            row["attempts"] = attempts
            if outcome.attempted:
                row["next_attempt_at"] = self.retry.next_attempt_at(now, attempts, outcome.retry_after)
            else:  # deferred before any request: it keeps its attempts and goes when the host allows
                row["next_attempt_at"] = int(now + (outcome.retry_after or self.retry.backoff[0]) + 0.999)
            if before.get("status") == "ingested":
                # A refresh that fails keeps the story's earlier chunks searchable, and what they came from.
                row.update(status="ingested", chunk_count=before["chunk_count"], next_attempt_at=0,
                           reason=_clip(f"refresh failed: {outcome.reason}", 4000),
                           **{k: before.get(k, "") for k in ("etag", "last_modified", "fingerprint")})
        return row

    def due_threads(self, config, now: float, limit: int) -> list[int]:
        """Ingested stories whose thread is due: never (fully) read, or a refresh step has passed since."""
        steps = " or ".join(f"(thread_steps == {i} and posted_at <= {int(now - step)})"
                            for i, step in enumerate(config.refresh_after))
        filter_ = f'status == "ingested" and (thread_read_at == 0{" or " + steps if steps else ""})'
        rows = self._query_all(STORIES_COLLECTION, filter_, ["story_id", "posted_at"])
        return [int(r["story_id"]) for r in sorted(rows, key=lambda r: -int(r["posted_at"]))][:limit]

    def comment_hashes(self, story_ids: Iterable[int]) -> dict[int, dict[int, str]]:
        """Story id → {chunk key: content hash} of its comment chunks."""
        ids = sorted({int(i) for i in story_ids})
        found: dict[int, dict[int, str]] = {i: {} for i in ids}
        for start in range(0, len(ids), 1000):
            filter_ = f'kind == "comment" and story_id in {ids[start : start + 1000]}'
            for row in self._query_all(CHUNKS_COLLECTION, filter_, ["id", "story_id", "content_hash"]):
                found[int(row["story_id"])][int(row["id"])] = row["content_hash"]
        return found

    def remove_stories(self, reasons: dict[int, str]) -> None:
        """Stories killed or deleted on HN: their chunks go, their state says why (status `removed`)."""
        if not reasons:
            return
        ids = sorted(reasons)
        self.client.delete(CHUNKS_COLLECTION, filter=f"story_id in {ids}")
        now = int(time.time())
        rows = []
        for story_id, state in self.states(ids).items():
            rows.append({**state, "status": "removed", "stage": "lifecycle", "reason": _clip(reasons[story_id], 4000),
                         "chunk_count": 0, "comment_chunks": 0, "next_attempt_at": 0, "updated_at": now,
                         "unused_vector": [0.0, 0.0]})
        self.client.upsert(STORIES_COLLECTION, rows)

    def recheck_candidates(self, updated: Iterable[int], limit: int) -> dict[int, dict]:
        """States of stored stories HN lists as changed (ingested, or removed and maybe back), at most `limit`."""
        states = self.states(updated)
        return dict(sorted(((i, s) for i, s in states.items() if s["status"] in ("ingested", "removed")),
                           reverse=True)[:limit])

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

    def due_failed_ids(self, now: float) -> list[int]:
        """Failed stories whose next attempt is due (0 means their attempts are spent)."""
        filter_ = f'status == "failed" and next_attempt_at > 0 and next_attempt_at <= {int(now)}'
        return sorted(int(r["story_id"]) for r in self._query_all(STORIES_COLLECTION, filter_, ["story_id"]))

    def story_rows(self, *statuses: str) -> list[dict]:
        filter_ = f"status in {list(statuses)}" if statuses else "story_id >= 0"
        return sorted(self._query_all(STORIES_COLLECTION, filter_, _STORY_FIELDS), key=lambda r: r["story_id"])

    def chunk_count(self, story_id: int | None = None) -> int:
        filter_ = "" if story_id is None else f"story_id == {int(story_id)}"
        rows = self.client.query(CHUNKS_COLLECTION, filter=filter_, output_fields=["count(*)"], consistency_level=CONSISTENCY)
        return int(rows[0]["count(*)"])

    def chunks_of(self, story_id: int) -> list[dict]:
        """The story's page chunks in order, then its comment chunks in thread order."""
        rows = self._query_all(CHUNKS_COLLECTION, f"story_id == {int(story_id)}",
                               ["id", "story_id", "chunk_index", "title", "text", "ingested_at", "kind", "comment_id",
                                "author", "thread_path", "posted_at"])
        return sorted(rows, key=lambda r: (r["kind"] != "page", _path_key(r["thread_path"]), r["chunk_index"]))

    def newest_posted_at(self) -> int:
        """The creation time of the newest story with chunks (0: none, or only chunks from schema v1)."""
        rows = self._query_all(CHUNKS_COLLECTION, 'kind == "page" and chunk_index == 0', ["posted_at"])
        return max((int(r["posted_at"]) for r in rows), default=0)

    def all_chunk_keys(self) -> list[tuple[int, int, int, int]]:
        """(id, story_id, comment_id, chunk_index) of every chunk row: for duplicate checks."""
        rows = self._query_all(CHUNKS_COLLECTION, "id >= 0", ["id", "story_id", "comment_id", "chunk_index"])
        return [(int(r["id"]), int(r["story_id"]), int(r["comment_id"]), int(r["chunk_index"])) for r in rows]

    def search(self, vector: np.ndarray, k: int = 5, filter_: str = "") -> list[dict]:
        """The `k` chunks nearest to `vector` (cosine), best first."""
        hits = self.client.search(CHUNKS_COLLECTION, data=[vector.tolist()], limit=k, filter=filter_,
                                  output_fields=CHUNK_FIELDS, search_params=_DENSE_PARAMS,
                                  consistency_level=CONSISTENCY)[0]
        return [{"score": float(hit["distance"]), **hit["entity"]} for hit in hits]

    def search_text(self, query: str, k: int = 5, filter_: str = "") -> list[dict]:
        """The `k` chunks that best match `query`'s words (BM25), best first."""
        hits = self.client.search(CHUNKS_COLLECTION, data=[query], anns_field=FULL_TEXT_FIELD, limit=k,
                                  filter=filter_, output_fields=CHUNK_FIELDS, search_params={"metric_type": "BM25"},
                                  consistency_level=CONSISTENCY)[0]
        # Milvus Lite reports BM25 as a negative distance (smaller is better); a server as the score.
        return [{"score": abs(float(hit["distance"])), **hit["entity"]} for hit in hits]

    def search_hybrid(self, query: str, vector: np.ndarray, k: int = 5, filter_: str = "", ranker=None) -> list[dict]:
        """Dense and BM25 candidates fused by `ranker` (default reciprocal rank fusion, k=20), best first.

        k=20 rather than the customary 60: on the corpus bench it was as good or better on every query set
        (docs/benchmarks.md), as a smaller k lets one list's top hit count for more."""
        from pymilvus import AnnSearchRequest, RRFRanker

        requests = [
            AnnSearchRequest(data=[vector.tolist()], anns_field="embedding", param=_DENSE_PARAMS, limit=k, expr=filter_),
            AnnSearchRequest(data=[query], anns_field=FULL_TEXT_FIELD, param={"metric_type": "BM25"}, limit=k,
                             expr=filter_),
        ]
        hits = self.client.hybrid_search(CHUNKS_COLLECTION, requests, ranker or RRFRanker(20), limit=k,
                                         output_fields=CHUNK_FIELDS, consistency_level=CONSISTENCY)[0]
        return [{"score": float(hit["distance"]), **hit["entity"]} for hit in hits]

    def _query_all(self, collection: str, filter_: str, fields: list[str], page: int = 10_000) -> list[dict]:
        return [row for batch in self._pages(collection, filter_, fields, page) for row in batch]

    def _pages(self, collection: str, filter_: str, fields: list[str], page: int) -> Iterator[list[dict]]:
        iterator = self.client.query_iterator(collection, batch_size=page, filter=filter_, output_fields=fields,
                                              consistency_level=CONSISTENCY)
        try:
            while batch := iterator.next():
                yield [dict(r) for r in batch]
        finally:
            iterator.close()


def chunks_schema(full_text: bool = True):
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, description="Hacker News story chunks")
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("story_id", DataType.INT64)
    schema.add_field("chunk_index", DataType.INT64)
    schema.add_field("title", DataType.VARCHAR, max_length=2048)
    schema.add_field("url", DataType.VARCHAR, max_length=4096)
    # The standard analyzer (words, lowercased) is the one every BM25 backend has; Lite has no stemmer.
    schema.add_field("text", DataType.VARCHAR, max_length=65535, enable_analyzer=full_text)
    schema.add_field("ingested_at", DataType.INT64)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=EMBEDDING_DIM)
    schema.add_field("kind", DataType.VARCHAR, max_length=16)  # "page": the story's page or its own text
    schema.add_field("posted_at", DataType.INT64)  # the story's creation time, Unix seconds
    schema.add_field("points", DataType.INT64)
    schema.add_field("comments", DataType.INT64)
    schema.add_field("domain", DataType.VARCHAR, max_length=256)
    schema.add_field("comment_id", DataType.INT64)  # 0 on a page chunk
    schema.add_field("author", DataType.VARCHAR, max_length=256)
    schema.add_field("thread_path", DataType.VARCHAR, max_length=4096)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=32)
    if full_text:
        schema.add_field(FULL_TEXT_FIELD, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="text_bm25", function_type=FunctionType.BM25,
                                     input_field_names=["text"], output_field_names=[FULL_TEXT_FIELD]))
    return schema


def stories_schema():
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
    schema.add_field("next_attempt_at", DataType.INT64)  # Unix seconds; 0: none scheduled
    schema.add_field("etag", DataType.VARCHAR, max_length=1024)
    schema.add_field("last_modified", DataType.VARCHAR, max_length=128)
    schema.add_field("fingerprint", DataType.VARCHAR, max_length=64)
    schema.add_field("posted_at", DataType.INT64)
    schema.add_field("points", DataType.INT64)
    schema.add_field("comments", DataType.INT64)
    schema.add_field("thread_read_at", DataType.INT64)  # Unix seconds of the last complete read; 0: due
    schema.add_field("thread_steps", DataType.INT64)  # ThreadConfig.refresh_after steps passed at that read
    schema.add_field("comment_chunks", DataType.INT64)
    schema.add_field("item_hash", DataType.VARCHAR, max_length=32)
    # Milvus requires a vector field in every collection; this one is never searched.
    schema.add_field("unused_vector", DataType.FLOAT_VECTOR, dim=2)
    return schema


_SCHEMAS = {CHUNKS_COLLECTION: chunks_schema, STORIES_COLLECTION: stories_schema}
_DENSE_PARAMS = {"metric_type": "COSINE", "params": {"nprobe": SEARCH_NPROBE}}


def domain_of(url: str) -> str:
    """The host a search filters by, without `www.`: news.ycombinator.com for a text post."""
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def _with_new_fields(name: str, row: dict) -> dict:
    filled = {**_DEFAULTS[name], **row}
    if name == CHUNKS_COLLECTION and "domain" not in row:
        filled["domain"] = domain_of(row.get("url", ""))
    return filled
_PRIMARY_KEY = {CHUNKS_COLLECTION: "id", STORIES_COLLECTION: "story_id"}


def _path_key(path: str) -> list[int]:
    return [int(part) for part in path.split("/") if part]


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
