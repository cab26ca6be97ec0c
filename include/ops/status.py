"""What the store holds: counts, the latest problems, freshness and a running reindex's progress.

    python -m include.ops.status                 # summary and the latest problems (bounded: any store size)
    python -m include.ops.status --json          # the same, machine-readable (what the HTTP API's /status serves)
    python -m include.ops.status --all           # every story, and an audit of every chunk key (reads the whole store)
    python -m include.ops.status --all --json    # ... machine-readable (used by the tests)
    python -m include.ops.status --all --json --chunks   # ... with every chunk's text
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial

from include.config import CHUNKS_COLLECTION, STORIES_COLLECTION, RetryPolicy
from include.store import ChunkStore
from include.store.client import close_client, lite_size_warning, open_client, uri_from_environment
from include.store.collections import CONSISTENCY, BoundedReads, count
from include.store.ledger import SCAN_LIMIT, STORY_FIELDS

STATUSES = ("ingested", "skipped", "failed", "removed")
PROBLEM_STATUSES = ["failed", "skipped", "removed"]


def main() -> None:
    parser = argparse.ArgumentParser(description="What hn_ingest has stored in Milvus.")
    parser.add_argument("--all", action="store_true", help="every story and a chunk-key audit (reads the whole store)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--chunks", action="store_true", help="with --all: include every chunk's text")
    args = parser.parse_args()
    uri, token = uri_from_environment()
    client = open_client(uri, token)
    now = time.time()
    try:
        store = ChunkStore(BoundedReads(client))
        store.schema.load()
        report = {"uri": uri, "index_type": store.schema.index_type(), **store_summary(store, now, uri=uri)}
        if args.all:
            report.update(full_audit(store, args.chunks))
    finally:
        close_client(client, uri)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{CHUNKS_COLLECTION} in {uri}: {report['chunks']} chunks (index {report['index_type']}); "
          f"story states: {report['stories']}")
    if report["warning"]:
        print(f"WARNING: {report['warning']}")
    if report.get("reindex"):
        print(f"reindex: {describe_reindex(report['reindex'])}")
    listed = report["story_rows"] if args.all else report["problems"]
    if not args.all and report["problems_total"] > len(listed):
        print(f"the {len(listed)} latest of {report['problems_total']} skipped, failed or removed stories (--all: every story):")
    for story in listed:
        if args.all or story["status"] != "ingested" or story["reason"]:
            line = f"  {story['story_id']:>9} {story['status']:<8} {story.get('chunk_count', ''):>4} chunks  {story['title'][:60]}"
            print(line + (f"\n            {story['reason']}" if story["reason"] else ""))
            if story["status"] == "failed":
                print(f"            {retry_line(story, RetryPolicy(), now)}")


def full_audit(store: ChunkStore, with_chunks: bool) -> dict:
    """Every story row and every chunk key: what a duplicate check needs. Reads the whole store."""
    stories = store.ledger.story_rows()
    keys = store.reader.all_keys()
    audit = {
        "distinct_chunk_ids": len({k[0] for k in keys}),
        # (story, comment, chunk index) names a chunk as the pipeline means it: a duplicate under a
        # second key shows as fewer distinct names than rows.
        "distinct_story_chunk_pairs": len({k[1:] for k in keys}),
        "comment_chunks": sum(1 for k in keys if k[2]),
        "stories_with_chunks": len({k[1] for k in keys}),
        "story_rows": stories,
    }
    if with_chunks:
        audit["chunk_rows"] = [row for s in stories for row in store.reader.chunks_of(s["story_id"])]
    return audit


def store_summary(store: ChunkStore, now: float, max_problems: int = 100, uri: str = "") -> dict:
    """Counts, the latest problems (newest first), freshness and a running reindex: what the HTTP API's
    /status and the UI view show. Count queries and pages of bounded size: its cost does not grow with
    the rows the store holds."""
    client = store.client
    # Independent reads, at once: on a Milvus 2.3 server each takes ~0.2 s whatever it reads.
    reads = {  # keys apart from the statuses
        **{status: partial(count, client, STORIES_COLLECTION, f'status == "{status}"') for status in STATUSES},
        "problems": partial(_latest, client, f"status in {PROBLEM_STATUSES}", "updated_at", now, max_problems),
        "newest posted": partial(_latest, client, 'status == "ingested"', "posted_at", now, 1),
        "last ingested": partial(_latest, client, 'status == "ingested"', "updated_at", now, 1),
        "job": store.jobs.reindex,
        "chunks": store.reader.count,  # count(*): on a server it sees a duplicated key, a query does not
    }
    with ThreadPoolExecutor(max_workers=len(reads)) as pool:
        found = dict(zip(reads, pool.map(lambda read: read(), reads.values()), strict=True))
    stories = {status: found[status] for status in STATUSES if found[status]}
    problems, newest, ingested, job, chunks = (found[k] for k in ("problems", "newest posted", "last ingested", "job",
                                                                  "chunks"))
    policy = RetryPolicy()
    newest_posted = int(newest[0]["posted_at"]) if newest else 0
    last_ingest = int(ingested[0]["updated_at"]) if ingested else None
    return {
        "chunks": chunks,
        "warning": lite_size_warning(uri, chunks) if uri else None,
        "stories": stories,
        "full_text_search": store.schema.has_full_text(),
        "problems_total": sum(stories.get(s, 0) for s in PROBLEM_STATUSES),
        "problems": [
            {**{k: s[k] for k in ("story_id", "status", "stage", "reason", "title", "url", "attempts",
                                  "next_attempt_at", "updated_at")},
             "retry": retry_line(s, policy, now) if s["status"] == "failed" else ""}
            for s in problems
        ],
        "freshness": {
            "newest_story_posted_at": newest_posted or None,
            "newest_story_age_seconds": round(now - newest_posted) if newest_posted else None,
            "last_ingest_at": last_ingest,
            "last_ingest_age_seconds": round(now - last_ingest) if last_ingest else None,
        },
        "reindex": vars(store.jobs.reindex_progress(job, now)) if job is not None else None,
    }


def _latest(client, filter_: str, field: str, now: float, limit: int) -> list[dict]:
    """The `limit` stories matching `filter_` with the greatest `field` (a time), whatever the store holds.

    Milvus has no ORDER BY: when more than `SCAN_LIMIT` stories match, count queries find a window back
    from `now` holding at least `limit` of them and at most `SCAN_LIMIT` (widening from an hour, halving
    when too full); only that window's (id, time) pairs are read, and only the `limit` shown read whole."""
    found = _page(client, filter_, ["story_id", field], SCAN_LIMIT)
    if len(found) < SCAN_LIMIT:  # one page held them all: no window to find
        return _read_newest(client, found, field, limit)
    span, too_few, too_many = 3600, 0, None
    for _ in range(64):
        held = count(client, STORIES_COLLECTION, f"{filter_} and {field} >= {int(now - span)}")
        if held > SCAN_LIMIT:
            too_many = span
        elif held < limit and span < now:
            too_few = span
        else:
            break
        span = span * 8 if too_many is None else (too_few + too_many) // 2
        if too_many is not None and too_many - too_few <= 1:
            span = too_few  # more than SCAN_LIMIT stories in one second: the newest of what fits
            break
    return _newest(client, f"{filter_} and {field} >= {int(now - span)}", field, limit)


def _newest(client, filter_: str, field: str, limit: int) -> list[dict]:
    """The `limit` newest by `field` of the (at most `SCAN_LIMIT`) stories matching `filter_`, read whole."""
    return _read_newest(client, _page(client, filter_, ["story_id", field], SCAN_LIMIT), field, limit)


def _read_newest(client, found: list[dict], field: str, limit: int) -> list[dict]:
    newest = [int(r["story_id"]) for r in sorted(found, key=lambda r: (-int(r[field]), -int(r["story_id"])))[:limit]]
    if not newest:
        return []
    rows = _page(client, f"story_id in {newest}", STORY_FIELDS, limit)
    return sorted(rows, key=lambda r: (-int(r[field]), -int(r["story_id"])))  # a later id is a later story


def _page(client, filter_: str, fields: list[str], limit: int) -> list[dict]:
    """Up to `limit` matching stories in one query (no order needed here: the caller sorts); a query
    iterator's first page costs two round trips, ~0.2 s each on a Milvus 2.3 server."""
    return [dict(r) for r in client.query(STORIES_COLLECTION, filter=filter_, output_fields=fields, limit=limit,
                                          consistency_level=CONSISTENCY)]


def describe_reindex(progress: dict) -> str:
    left = progress["seconds_left"]
    eta = f", about {left / 60:.0f} min left" if left is not None and progress["state"] == "running" else ""
    gave_up = f", {progress['given_up']} given up (their batch failed on every pass)" if progress.get("given_up") else ""
    return f"{progress['state']}: {progress['done']} of {progress['total']} stories done{eta}{gave_up}"


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
