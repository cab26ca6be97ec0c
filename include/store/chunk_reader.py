"""Reads of `hn_chunks`: nearest chunks by vector (IVF_FLAT), by words (BM25) and both fused; a story's
chunks in order; counts. The retrieval API (`include.store.search`) is built on these."""

from __future__ import annotations

import os

import numpy as np

from include.store.collections import CHUNKS_COLLECTION, CONSISTENCY, query_all
from include.store.schema import FULL_TEXT_FIELD

SEARCH_NPROBE = int(os.environ.get("HN_INGEST_SEARCH_NPROBE", "32"))
CHUNK_FIELDS = ["story_id", "chunk_index", "title", "url", "text", "kind", "posted_at", "points", "comments", "domain",
                "comment_id", "author", "thread_path"]
_DENSE_PARAMS = {"metric_type": "COSINE", "params": {"nprobe": SEARCH_NPROBE}}


class ChunkReader:
    """Searches and reads `hn_chunks` through a `pymilvus.MilvusClient`."""

    def __init__(self, client) -> None:
        self.client = client

    def dense(self, vector: np.ndarray, k: int = 5, filter_: str = "") -> list[dict]:
        """The `k` chunks nearest to `vector` (cosine), best first."""
        hits = self.client.search(CHUNKS_COLLECTION, data=[vector.tolist()], limit=k, filter=filter_,
                                  output_fields=CHUNK_FIELDS, search_params=_DENSE_PARAMS,
                                  consistency_level=CONSISTENCY)[0]
        return [{"score": float(hit["distance"]), **hit["entity"]} for hit in hits]

    def text(self, query: str, k: int = 5, filter_: str = "") -> list[dict]:
        """The `k` chunks that best match `query`'s words (BM25), best first."""
        hits = self.client.search(CHUNKS_COLLECTION, data=[query], anns_field=FULL_TEXT_FIELD, limit=k,
                                  filter=filter_, output_fields=CHUNK_FIELDS, search_params={"metric_type": "BM25"},
                                  consistency_level=CONSISTENCY)[0]
        # Milvus Lite reports BM25 as a negative distance (smaller is better); a server as the score.
        return [{"score": abs(float(hit["distance"])), **hit["entity"]} for hit in hits]

    def hybrid(self, query: str, vector: np.ndarray, k: int = 5, filter_: str = "", ranker=None) -> list[dict]:
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

    def chunks_of(self, story_id: int) -> list[dict]:
        """The story's page chunks in order, then its comment chunks in thread order."""
        rows = query_all(self.client, CHUNKS_COLLECTION, f"story_id == {int(story_id)}",
                         ["id", "story_id", "chunk_index", "title", "text", "ingested_at", "kind", "comment_id",
                          "author", "thread_path", "posted_at"])
        return sorted(rows, key=lambda r: (r["kind"] != "page", _path_key(r["thread_path"]), r["chunk_index"]))

    def count(self, story_id: int | None = None) -> int:
        """Chunk rows (count(*): on a server it counts a duplicated key twice, as a duplicate check needs)."""
        filter_ = "" if story_id is None else f"story_id == {int(story_id)}"
        rows = self.client.query(CHUNKS_COLLECTION, filter=filter_, output_fields=["count(*)"],
                                 consistency_level=CONSISTENCY)
        return int(rows[0]["count(*)"])

    def all_keys(self) -> list[tuple[int, int, int, int]]:
        """(id, story_id, comment_id, chunk_index) of every chunk row: for duplicate checks."""
        rows = query_all(self.client, CHUNKS_COLLECTION, "id >= 0", ["id", "story_id", "comment_id", "chunk_index"])
        return [(int(r["id"]), int(r["story_id"]), int(r["comment_id"]), int(r["chunk_index"])) for r in rows]


def _path_key(path: str) -> list[int]:
    return [int(part) for part in path.split("/") if part]
