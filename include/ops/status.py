"""Print what the store holds: chunk and story counts, and every skipped or failed story with its reason.

    python -m include.ops.status            # summary and problems
    python -m include.ops.status --all      # every story
    python -m include.ops.status --json     # machine-readable (used by the tests)
    python -m include.ops.status --json --chunks   # ... with every chunk's text
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from datetime import UTC, datetime

from include.config import CHUNKS_COLLECTION, RetryPolicy
from include.store import ChunkStore
from include.store.client import close_client, open_client, uri_from_environment


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
        store.schema.ensure_collections()
        stories = store.ledger.story_rows()
        keys = store.reader.all_keys()
        report = {
            "uri": uri,
            "index_type": store.schema.index_type(),
            "chunks": store.reader.count(),  # count(*): on a server it sees a duplicated key, a query does not
            "distinct_chunk_ids": len({k[0] for k in keys}),
            # (story, comment, chunk index) names a chunk as the pipeline means it: a duplicate under a
            # second key shows as fewer distinct names than rows.
            "distinct_story_chunk_pairs": len({k[1:] for k in keys}),
            "comment_chunks": sum(1 for k in keys if k[2]),
            "stories_with_chunks": len({k[1] for k in keys}),
            "stories": dict(Counter(s["status"] for s in stories)),
            "story_rows": stories,
        }
        if args.chunks:
            report["chunk_rows"] = [row for s in report["story_rows"] for row in store.reader.chunks_of(s["story_id"])]
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
            if story["status"] == "failed":
                print(f"            {retry_line(story, RetryPolicy(), time.time())}")


def store_summary(store: ChunkStore, now: float, max_problems: int = 100) -> dict:
    """Counts, the latest problems (failed and skipped stories, newest first) and freshness: what the
    HTTP API's /status and the UI view show."""
    stories = store.ledger.story_rows()
    problems = sorted((s for s in stories if s["status"] != "ingested"), key=lambda s: -s["updated_at"])
    policy = RetryPolicy()
    ingested = [s["updated_at"] for s in stories if s["status"] == "ingested"]
    newest_posted = store.reader.newest_posted_at()
    return {
        "chunks": store.reader.count(),
        "stories": dict(Counter(s["status"] for s in stories)),
        "full_text_search": store.schema.has_full_text(),
        "problems_total": len(problems),
        "problems": [
            {**{k: s[k] for k in ("story_id", "status", "stage", "reason", "title", "url", "attempts",
                                  "next_attempt_at", "updated_at")},
             "retry": retry_line(s, policy, now) if s["status"] == "failed" else ""}
            for s in problems[:max_problems]
        ],
        "freshness": {
            "newest_story_posted_at": newest_posted or None,
            "newest_story_age_seconds": round(now - newest_posted) if newest_posted else None,
            "last_ingest_at": max(ingested, default=None),
            "last_ingest_age_seconds": round(now - max(ingested)) if ingested else None,
        },
    }


def retry_line(story: dict, policy: RetryPolicy, now: float) -> str:
    """Where a failed story stands: its attempts, and when the next runs (or that there is none)."""
    attempts = f"attempt {story['attempts']} of {policy.max_attempts}"
    next_at = int(story["next_attempt_at"])
    if not next_at:
        return f"{attempts}; no more tries (a reindex run tries it again)"
    when = datetime.fromtimestamp(next_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    wait = next_at - now
    due = "due now" if wait <= 0 else f"in {wait / 60:.0f} min" if wait >= 90 else f"in {wait:.0f} s"
    return f"{attempts}; next try {when} ({due})"


if __name__ == "__main__":
    main()
