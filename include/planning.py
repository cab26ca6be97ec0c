"""Decide which stories a run ingests, and cut them into micro-batches for the mapped tasks.

- A scheduled or manual run takes new stories (`/v0/newstories.json`) the store has not ingested or
  skipped, plus failed ones that still have attempts left.
- A backfill run takes the stories created in its data interval (Algolia), same filter; with
  `reindex=true` it takes every story of its interval, done or not (and only those).
- `reindex=true` on any other run takes every story the store knows (ingested or failed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from include.config import MAX_FAILED_ATTEMPTS
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
        ids = list(offered) if include_done else _not_done(offered, store)
        if mode == "new":
            retry = [i for i in store.retryable_failed_ids(MAX_FAILED_ATTEMPTS) if i not in set(ids)]
            ids += sorted(retry, reverse=True)
    return ids[:max_stories] if max_stories else ids


def _not_done(offered: list[int], store: ChunkStore) -> list[int]:
    """Drop stories already ingested or skipped, and failed ones out of attempts."""
    states = store.states(offered)

    def to_do(story_id: int) -> bool:
        state = states.get(story_id)
        if state is None:
            return True
        return state["status"] == "failed" and int(state["attempts"]) < MAX_FAILED_ATTEMPTS

    return [i for i in offered if to_do(i)]


def plan_batches(story_ids: list[int], batch_size: int) -> list[dict]:
    """Micro-batches as small dicts (XCom-sized), each labelled for the Airflow grid view."""
    batches = []
    for number, start in enumerate(range(0, len(story_ids), batch_size)):
        ids = story_ids[start : start + batch_size]
        batches.append({"number": number, "story_ids": ids,
                        "label": f"batch {number}: {len(ids)} stories {min(ids)}-{max(ids)}"})
    return batches

