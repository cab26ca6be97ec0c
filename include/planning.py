"""Decide which stories a run ingests, and cut them into micro-batches for the mapped tasks.

- A scheduled or manual run takes new stories (`/v0/newstories.json`) the store has not ingested or
  skipped, plus failed ones whose next attempt is due (`RetryPolicy`: waits in wall time, not runs).
- A backfill run takes the stories created in its data interval (Algolia), same filter; with
  `reindex=true` it takes every story of its interval, done or not (and only those).
- `reindex=true` on any other run takes every story the store knows (ingested or failed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from include.config import ThreadConfig
from include.hn_api import HackerNewsClient
from include.milvus_store import ChunkStore

Mode = Literal["new", "backfill", "reindex"]


def run_mode(run_type: str, reindex: bool) -> Mode:
    """A backfill run stays a backfill of its own interval even with `reindex=true`: a backfill of N
    runs must not re-embed the whole store N times."""
    if run_type == "backfill":
        return "backfill"
    return "reindex" if reindex else "new"


@dataclass(frozen=True)
class Window:
    start: int  # Unix seconds, inclusive
    end: int  # Unix seconds, exclusive


def select_story_ids(
    mode: Mode,
    hn: HackerNewsClient,
    store: ChunkStore,
    window: Window | None = None,
    max_stories: int | None = None,
    include_done: bool = False,
    now: float | None = None,
) -> list[int]:
    """Story ids for this run, newest first for new stories (freshness), oldest first otherwise.

    `include_done` (a backfill with `reindex=true`) keeps the window's stories already ingested or skipped.
    """
    if mode == "reindex":
        ids = store.story_ids_with_status("ingested", "failed")
    else:
        if mode == "backfill":
            if window is None:
                raise ValueError("a backfill run needs its data interval")
            offered = hn.story_ids_created_between(window.start, window.end)
        else:
            offered = sorted(set(hn.new_story_ids()), reverse=True)
        now = time.time() if now is None else now
        ids = list(offered) if include_done else _not_done(offered, store, now)
        if mode == "new":
            retry = [i for i in store.due_failed_ids(now) if i not in set(ids)]
            ids += sorted(retry, reverse=True)
    return ids[:max_stories] if max_stories else ids


def follow_changes(hn: HackerNewsClient, store: ChunkStore, threads: ThreadConfig, recheck_limit: int,
                   now: float) -> tuple[list[int], list[int]]:
    """Lifecycle and thread refreshes of a scheduled or manual run: (stories to ingest again, threads due).

    Stories HN lists as changed and stories whose thread is due are compared with their items: killed
    or deleted ones are removed from the store here, edited ones come back for a new ingest."""
    from include.lifecycle import check_stories

    due = store.due_threads(threads, now, threads.refreshes_per_run) if threads.enabled else []
    candidates = store.recheck_candidates(hn.updated_item_ids(), recheck_limit) if recheck_limit else {}
    candidates.update(store.states(due))
    changes = check_stories(hn, candidates, now)
    store.remove_stories(changes.removed)
    return changes.reingest, [i for i in due if i not in changes.removed and i not in changes.reingest]


def _not_done(offered: list[int], store: ChunkStore, now: float) -> list[int]:
    """Drop stories already ingested or skipped, and failed ones not due (waiting, or out of attempts)."""
    states = store.states(offered)
    return [i for i in offered if (state := states.get(i)) is None or is_due(state, now)]


def is_due(state: dict, now: float) -> bool:
    return state["status"] == "failed" and 0 < int(state["next_attempt_at"]) <= now


def validators(story_ids: list[int], store: ChunkStore, fingerprint: str) -> dict[str, list[str]]:
    """ETag and Last-Modified of stories stored by this same pipeline (model, chunking): only then
    does a 304 mean the stored chunks are still right. Keys are strings (XCom is JSON)."""
    found = {}
    for story_id, state in store.states(story_ids).items():
        if state["status"] == "ingested" and state["fingerprint"] == fingerprint and (
                state["etag"] or state["last_modified"]):
            found[str(story_id)] = [state["etag"], state["last_modified"]]
    return found


def plan_batches(story_ids: list[int], batch_size: int, known: dict[str, list[str]] | None = None,
                 threads: bool = False, refresh_ids: list[int] | None = None) -> list[dict]:
    """Micro-batches as small dicts (XCom-sized), each labelled for the Airflow grid view, each with
    the validators of its stories (`validators`) for a conditional refetch.

    `threads`: each batch also reads its stories' comment threads (`thread_ids`). `refresh_ids`: stories
    whose thread alone is due; they go in batches of their own after the pages, so a big thread never
    holds up new stories."""
    known = known or {}
    batches = []
    for start in range(0, len(story_ids), batch_size):
        ids = story_ids[start : start + batch_size]
        batches.append({"number": len(batches), "story_ids": ids,
                        "label": f"batch {len(batches)}: {len(ids)} stories {min(ids)}-{max(ids)}",
                        "validators": {str(i): known[str(i)] for i in ids if str(i) in known},
                        "thread_ids": list(ids) if threads else []})
    refresh_ids = [i for i in refresh_ids or [] if i not in set(story_ids)]
    for start in range(0, len(refresh_ids), batch_size):
        ids = refresh_ids[start : start + batch_size]
        batches.append({"number": len(batches), "story_ids": [], "thread_ids": ids, "validators": {},
                        "label": f"batch {len(batches)}: {len(ids)} threads {min(ids)}-{max(ids)}"})
    return batches

