"""Print what the store holds: chunk and story counts, and every skipped or failed story with its reason.

    python -m include.status            # summary and problems
    python -m include.status --all      # every story
    python -m include.status --json     # machine-readable (used by the tests)
    python -m include.status --json --chunks   # ... with every chunk's text
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from include.config import CHUNKS_COLLECTION
from include.milvus_client import close_client, open_client, uri_from_environment
from include.milvus_store import ChunkStore


def main() -> None:
    parser = argparse.ArgumentParser(description="What hn_ingest has stored in Milvus.")
    parser.add_argument("--all", action="store_true", help="list every story, not only the problems")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--chunks", action="store_true", help="with --json: include every chunk's text")
    args = parser.parse_args()
    uri, token = uri_from_environment()
    client = open_client(uri, token)
    try:
        store = ChunkStore(client)
        store.ensure_collections()
        stories = store.story_rows()
        keys = store.all_chunk_keys()
        report = {
            "uri": uri,
            "index_type": store.index_type(),
            "chunks": store.chunk_count(),  # count(*): on a server it sees a duplicated key, a query does not
            "distinct_chunk_ids": len({k[0] for k in keys}),
            "distinct_story_chunk_pairs": len({k[1:] for k in keys}),
            "stories_with_chunks": len({k[1] for k in keys}),
            "stories": dict(Counter(s["status"] for s in stories)),
            "story_rows": stories,
        }
        if args.chunks:
            report["chunk_rows"] = [row for s in report["story_rows"] for row in store.chunks_of(s["story_id"])]
    finally:
        close_client(client, uri)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{CHUNKS_COLLECTION} in {uri}: {report['chunks']} chunks from {report['stories_with_chunks']} stories "
          f"(index {report['index_type']}); story states: {report['stories']}")
    for story in stories:
        if args.all or story["status"] != "ingested" or story["reason"]:
            line = f"  {story['story_id']:>9} {story['status']:<8} {story['chunk_count']:>4} chunks  {story['title'][:60]}"
            print(line + (f"\n            {story['reason']}" if story["reason"] else ""))


if __name__ == "__main__":
    main()
