"""Search the ingested stories from the command line (the retrieval API of `include.store.search`).

    python -m include.ops.search "how do I test frontend code coverage" -k 5 --mode hybrid --min-points 10

With Milvus Lite, the database is opened by one process at a time: this waits for a running write
task to finish (seconds). To search continuously while the scheduler runs, serve the directory with
`milvus-lite server` and point `AIRFLOW_CONN_MILVUS_DEFAULT` at it (see README).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from include.store import ChunkStore
from include.store.client import close_client, open_client, uri_from_environment
from include.store.collections import BoundedReads
from include.store.search import KINDS, MODES, Filters, InvalidQuery, SearchResult, search


def search_store(query: str, k: int = 5, mode: str = "hybrid", filters: Filters = Filters(),
                 chunks_per_story: int = 1) -> SearchResult:
    """Open the configured store, search it, close it (a Lite directory is free again for the writer)."""
    uri, token = uri_from_environment()
    client = open_client(uri, token)
    try:
        store = ChunkStore(BoundedReads(client))
        store.schema.load()
        return search(store, query, k, mode, filters, chunks_per_story)
    finally:
        close_client(client, uri)


def _unix(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp())


def main() -> None:
    parser = argparse.ArgumentParser(description="The stories that best match a query, best first.")
    parser.add_argument("query")
    parser.add_argument("-k", type=int, default=5, help="number of stories to show")
    parser.add_argument("--mode", choices=MODES, default="hybrid")
    parser.add_argument("--since", type=_unix, help="stories posted on or after this date (UTC), e.g. 2020-12-29")
    parser.add_argument("--until", type=_unix, help="stories posted before this date (UTC)")
    parser.add_argument("--min-points", type=int)
    parser.add_argument("--domain", help="only stories whose page is on this host, e.g. github.com")
    parser.add_argument("--kind", choices=KINDS, help="pages only (page) or comment threads only (comment)")
    parser.add_argument("--chunks", type=int, default=1, help="best chunks shown per story")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    filters = Filters(since=args.since, until=args.until, kind=args.kind, min_points=args.min_points,
                      domain=args.domain)
    try:
        result = search_store(args.query, args.k, args.mode, filters, args.chunks)
    except InvalidQuery as exc:
        sys.exit(f"error: {exc}")
    if args.json:
        print(json.dumps(result.to_dict()))
        return
    if result.notice:
        print(f"note: {result.notice}\n")
    for rank, story in enumerate(result.stories, 1):
        print(f"{rank}. [{story.score:.3f}] {story.title} ({story.points} points)\n   {story.url}\n   {story.hn_url}")
        for chunk in story.chunks:
            where = f"comment {chunk['comment_id']} by {chunk['author']}" if chunk.get("comment_id") else (
                f"chunk {chunk['chunk_index']}")
            print(f"   {where}: {' '.join(chunk['text'].split())[:300]}")
        print()
    if not result.stories:
        print("no matching stories stored")


if __name__ == "__main__":
    main()
