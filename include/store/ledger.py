"""The story ledger (`hn_stories`): each story's state, its retries, its page's validators and its
thread's refresh schedule. It is the pipeline's progress, kept in the same store as the data.

A state row says `ingested`, `skipped` (with the reason), `failed` (with the reason, the attempts made
and when the next may run) or `removed` (killed or deleted on HN, with why and when).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from include.config import RetryPolicy
from include.records import StoryOutcome, ThreadOutcome
from include.store.collections import CONSISTENCY, STORIES_COLLECTION, clip, first_page, query_all
from include.store.schema import with_new_fields

STORY_FIELDS = ["story_id", "status", "stage", "reason", "attempts", "chunk_count", "title", "url", "updated_at",
                "next_attempt_at", "etag", "last_modified", "fingerprint", "posted_at", "points", "comments",
                "thread_read_at", "thread_steps", "comment_chunks", "item_hash"]
_THREAD_FIELDS = ("thread_read_at", "thread_steps", "comment_chunks")
DUE_PER_RUN = 200  # failed stories retried per run
SCAN_LIMIT = 10_000  # rows a control-path query reads at most, whatever the store holds
_NO_VECTOR = [0.0, 0.0]  # the collection's required vector field, never searched


class StoryLedger:
    """Reads and writes story states through a `pymilvus.MilvusClient`."""

    def __init__(self, client, retry: RetryPolicy | None = None) -> None:
        self.client = client
        self.retry = retry or RetryPolicy()

    # -- reads --------------------------------------------------------------------------------

    def states(self, story_ids: Iterable[int]) -> dict[int, dict]:
        ids = sorted({int(i) for i in story_ids})
        found: dict[int, dict] = {}
        for start in range(0, len(ids), 1000):
            part = ids[start : start + 1000]
            for row in self.client.query(STORIES_COLLECTION, filter=f"story_id in {part}", output_fields=STORY_FIELDS,
                                         consistency_level=CONSISTENCY):
                found[int(row["story_id"])] = dict(row)
        return found

    def story_ids_with_status(self, *statuses: str) -> list[int]:
        rows = query_all(self.client, STORIES_COLLECTION, f"status in {list(statuses)}", ["story_id"])
        return sorted(int(r["story_id"]) for r in rows)

    def story_rows(self, *statuses: str) -> list[dict]:
        filter_ = f"status in {list(statuses)}" if statuses else "story_id >= 0"
        return sorted(query_all(self.client, STORIES_COLLECTION, filter_, STORY_FIELDS), key=lambda r: r["story_id"])

    def due_failed_ids(self, now: float, limit: int = DUE_PER_RUN) -> list[int]:
        """Failed stories whose next attempt is due (0 means their attempts are spent), at most `limit`:
        more wait for the next run, so a site down for a day does not swamp one run."""
        filter_ = f'status == "failed" and next_attempt_at > 0 and next_attempt_at <= {int(now)}'
        return sorted(int(r["story_id"]) for r in first_page(self.client, STORIES_COLLECTION, filter_, ["story_id"],
                                                              limit))

    def due_threads(self, config, now: float, limit: int) -> list[int]:
        """Ingested stories whose thread is due: never (fully) read, or a refresh step has passed since;
        the newest first among the first `SCAN_LIMIT` found (in a live store the due ones are a few days'
        stories: every refresh step is passed within `refresh_after`'s last)."""
        steps = " or ".join(f"(thread_steps == {i} and posted_at <= {int(now - step)})"
                            for i, step in enumerate(config.refresh_after))
        filter_ = f'status == "ingested" and (thread_read_at == 0{" or " + steps if steps else ""})'
        rows = first_page(self.client, STORIES_COLLECTION, filter_, ["story_id", "posted_at"], SCAN_LIMIT)
        return [int(r["story_id"]) for r in sorted(rows, key=lambda r: -int(r["posted_at"]))][:limit]

    def recheck_candidates(self, updated: Iterable[int], limit: int) -> dict[int, dict]:
        """States of stored stories HN lists as changed (ingested, or removed and maybe back), at most `limit`."""
        states = self.states(updated)
        return dict(sorted(((i, s) for i, s in states.items() if s["status"] in ("ingested", "removed")),
                           reverse=True)[:limit])

    # -- writes -------------------------------------------------------------------------------

    def write_states(self, outcomes: Sequence[StoryOutcome], threads: Sequence[ThreadOutcome], now: int) -> None:
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
            rows[thread.story_id] = _with_thread(dict(row), thread)
        self.client.upsert(STORIES_COLLECTION, [with_new_fields(STORIES_COLLECTION, {**r, "unused_vector": _NO_VECTOR})
                                                for r in rows.values()])

    def mark_removed(self, reasons: dict[int, str], now: int) -> None:
        """Stories killed or deleted on HN (their rows are gone): the state says why."""
        rows = [{**state, "status": "removed", "stage": "lifecycle", "reason": clip(reasons[story_id], 4000),
                 "chunk_count": 0, "comment_chunks": 0, "next_attempt_at": 0, "updated_at": now,
                 "unused_vector": _NO_VECTOR}
                for story_id, state in self.states(reasons).items()]
        if rows:
            self.client.upsert(STORIES_COLLECTION, rows)

    def _state_row(self, outcome: StoryOutcome, before: dict, now: int) -> dict:
        row = {
            "story_id": outcome.story_id,
            "status": outcome.status,
            "stage": outcome.stage,
            "reason": clip(outcome.reason, 4000),
            "attempts": 0,
            "chunk_count": outcome.chunk_count,
            "title": clip(outcome.title, 2000),
            "url": clip(outcome.url, 4000),
            "updated_at": now,
            "next_attempt_at": 0,
            "etag": clip(outcome.etag, 1000),
            "last_modified": clip(outcome.last_modified, 120),
            "fingerprint": outcome.fingerprint,
            "unused_vector": _NO_VECTOR,
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
                           reason=clip(f"refresh failed: {outcome.reason}", 4000),
                           **{k: before.get(k, "") for k in ("etag", "last_modified", "fingerprint")})
        return row


def _with_thread(row: dict, thread: ThreadOutcome) -> dict:
    row.update(comment_chunks=thread.comment_chunks, comments=thread.comments)
    if thread.points:
        row["points"] = thread.points
    if thread.posted_at and not row.get("posted_at"):  # a row from before v3 learns its story's time
        row["posted_at"] = thread.posted_at
    if thread.complete:  # an incomplete thread stays due: its next slice goes in the next run
        row.update(thread_read_at=thread.read_at, thread_steps=thread.steps_passed)
    return row
