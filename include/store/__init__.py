"""Milvus: the project's two collections and every read and write of them, split by job.

- `client`: opening Milvus Lite (a local directory, one process at a time) or a server by URI;
- `schema`: the collections, their IVF_FLAT and BM25 indexes, schema versions and migration;
- `ledger`: the story ledger (`hn_stories`): states, retries, validators, the thread schedule;
- `chunk_writer`: the write protocol of a batch (chunks, stale tails, states last) and removals;
- `chunk_reader`: dense, BM25 and hybrid searches over `hn_chunks`, a story's chunks, counts;
- `jobs`: jobs that span runs (a reindex: its slices and progress), in `hn_jobs`;
- `search`: the retrieval API the CLI and the HTTP API call (stories for a query, a whole document).

`ChunkStore` bundles the parts on one client. Imports `config`, `records` and, for a query's vector
in `search`, `embed`.
"""

from __future__ import annotations

from include.config import RetryPolicy
from include.store.chunk_reader import ChunkReader
from include.store.chunk_writer import ChunkWriter
from include.store.collections import quiet_lite_iterator_noise
from include.store.jobs import JobStore
from include.store.ledger import StoryLedger
from include.store.schema import StoreSchema


class ChunkStore:
    """The store's parts on one `pymilvus.MilvusClient`: `schema`, `ledger`, `writer`, `reader`, `jobs`."""

    def __init__(self, client, retry: RetryPolicy | None = None) -> None:
        self.client = client
        self.schema = StoreSchema(client)
        self.ledger = StoryLedger(client, retry)
        self.writer = ChunkWriter(client, self.ledger, self.schema)
        self.reader = ChunkReader(client)
        self.jobs = JobStore(client)
        quiet_lite_iterator_noise()
