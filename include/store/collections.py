"""What every part of the store shares: how rows are read (paged, strongly consistent) and clipped.

The two collections: `hn_chunks`, one row per chunk (keys in `include.records.chunk_key`), and
`hn_stories`, one row per story seen: the pipeline's progress, kept beside the data; `hn_jobs`, one
row per job that spans runs (a reindex).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

from include.config import CHUNKS_COLLECTION, JOBS_COLLECTION, STORIES_COLLECTION

# A server's default ("Bounded") lets a read miss writes of the last seconds: a run could take a story
# the previous run has just ingested for new, or a write its own earlier state. Reads see every write.
CONSISTENCY = "Strong"
WRITE_SLICE = 1_000  # rows per upsert, and per page of a streamed read
PRIMARY_KEY = {CHUNKS_COLLECTION: "id", STORIES_COLLECTION: "story_id", JOBS_COLLECTION: "name"}


class BoundedReads:
    """The client for what only shows the store (status, search, the API): its queries and searches read
    "Bounded" (they may miss the writes of the last seconds) instead of waiting for every write. On a
    Milvus 2.3 server a strong read waits ~0.4 s for the next time tick, and /status makes ~15 reads.
    Anything that decides what to write keeps the strong reads of `CONSISTENCY`."""

    READS = ("query", "query_iterator", "search", "hybrid_search")

    def __init__(self, client) -> None:
        self._client = client

    def __getattr__(self, name: str):
        method = getattr(self._client, name)
        if name not in self.READS:
            return method
        return lambda *args, **kwargs: method(*args, **{**kwargs, "consistency_level": "Bounded"})


def query_all(client, collection: str, filter_: str, fields: list[str], page: int = 10_000) -> list[dict]:
    return [row for batch in pages(client, collection, filter_, fields, page) for row in batch]


def pages(client, collection: str, filter_: str, fields: list[str], page: int) -> Iterator[list[dict]]:
    """Rows matching `filter_`, `page` at a time: a result need not fit in one response or in memory."""
    quiet_lite_iterator_noise()
    iterator = client.query_iterator(collection, batch_size=page, filter=filter_, output_fields=fields,
                                     consistency_level=CONSISTENCY)
    try:
        while batch := iterator.next():
            yield [dict(r) for r in batch]
    finally:
        iterator.close()


def count(client, collection: str, filter_: str = "") -> int:
    rows = client.query(collection, filter=filter_, output_fields=["count(*)"], consistency_level=CONSISTENCY)
    return int(rows[0]["count(*)"])


def first_page(client, collection: str, filter_: str, fields: list[str], limit: int) -> list[dict]:
    """The first `limit` rows matching `filter_` in primary-key order (a query iterator's first page):
    work taken a slice at a time, whatever the collection holds."""
    return next(pages(client, collection, filter_, fields, limit), [])


def domain_of(url: str) -> str:
    """The host a search filters by, without `www.`: news.ycombinator.com for a text post."""
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def clip(text: str, max_bytes: int) -> str:
    """`text` cut to fit a VARCHAR of `max_bytes` (limits are in bytes), never mid-character."""
    encoded = text.encode("utf-8")
    return text if len(encoded) <= max_bytes else encoded[:max_bytes].decode("utf-8", errors="ignore")


def quiet_lite_iterator_noise() -> None:
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
