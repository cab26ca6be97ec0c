"""Decide which stories a run ingests, and cut them into micro-batches for the mapped tasks.

- A scheduled or manual run takes new stories (`/v0/newstories.json`) the store has not ingested or
  skipped, plus failed ones whose next attempt is due (`RetryPolicy`: waits in wall time, not runs).
- A backfill run takes the stories created in its data interval (Algolia), same filter; with
  `reindex=true` it takes every story of its interval, done or not (and only those).
- `reindex=true` on any other run begins a reindex of every story the store knows (ingested or failed)
  and takes its first slice (`HN_INGEST_REINDEX_PER_RUN` stories, after the run's new stories). The runs
  of `hn_reindex` (mode `continue_reindex`) take the next slices until none is left
  (`include.store.jobs`): bounded work per run, never more mapped batches than Airflow allows, resumable
  after any crash, cancellable (`cancel_reindex=true`). The live runs take no slice, so new stories keep
  their cadence meanwhile.
- A scheduled or manual run also follows HN: stored stories it lists as changed are compared with their
  items (edited ones come back, killed or deleted ones are removed by the writer), and threads due for a
  refresh get batches of their own.

`plan_run` is the whole decision; the `discover_stories` task only calls it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Literal

from include.config import ChunkConfig, EmbeddingConfig, ThreadConfig, pipeline_fingerprint
from include.hn.client import HackerNewsClient
from include.store import ChunkStore
from include.store.jobs import ReindexJob, ReindexProgress

Mode = Literal["new", "backfill", "reindex", "continue_reindex"]
# Stories of a running reindex each run takes (the run that begins it, after its new stories; hn_reindex's).
REINDEX_PER_RUN = int(os.environ.get("HN_INGEST_REINDEX_PER_RUN", "50"))
# A slice goes in batches of its own, larger than the new stories' (which stay small for freshness): each
# batch is three task instances, whose start-up costs more than a small page, so fewer make a shorter run.
REINDEX_BATCH_SIZE = int(os.environ.get("HN_INGEST_REINDEX_BATCH_SIZE", "25"))


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
    """Story ids for this run, newest first for new stories (freshness), oldest first for a window; none
    for a run that only continues a reindex.

    `include_done` (a backfill with `reindex=true`) keeps the window's stories already ingested or skipped.
    A reindex run takes the new stories like any run; the reindex's own slice comes from `plan_run`.
    """
    if mode == "continue_reindex":
        return []
    if mode == "backfill":
        if window is None:
            raise ValueError("a backfill run needs its data interval")
        offered = hn.story_ids_created_between(window.start, window.end)
    else:
        offered = sorted(set(hn.new_story_ids()), reverse=True)
    now = time.time() if now is None else now
    ids = list(offered) if include_done else _not_done(offered, store, now)
    if mode != "backfill":
        retry = [i for i in store.ledger.due_failed_ids(now) if i not in set(ids)]
        ids += sorted(retry, reverse=True)
    return ids[:max_stories] if max_stories else ids


@dataclass(frozen=True)
class RunRequest:
    """What a run was asked to do: its mode, its window (a backfill), and its params."""

    mode: Mode
    run_id: str
    window: Window | None = None
    max_stories: int | None = None
    batch_size: int = 10
    reindex: bool = False
    conditional: bool = True
    recheck_limit: int = 100  # stored stories /v0/updates.json lists as changed, compared per run
    cancel_reindex: bool = False
    max_batches: int = 1024  # Airflow's [core] max_map_length: a run never maps more
    reindex_per_run: int = REINDEX_PER_RUN
    reindex_batch_size: int = REINDEX_BATCH_SIZE


@dataclass
class RunPlan:
    batches: list[dict]
    story_ids: list[int]
    reingest: list[int]  # edited, or back after a removal
    refresh: list[int]  # threads due
    removed: dict[int, str]  # killed or deleted on HN: removed by the first batch's writer
    reindex_slice: list[int]  # this run's part of a running reindex
    reindex: ReindexProgress | None = None  # before this run's slice


def plan_run(request: RunRequest, hn: HackerNewsClient, store: ChunkStore, now: float | None = None) -> RunPlan:
    """The run's micro-batches: its new stories, the next slice of a running reindex, then the threads
    due; stories killed or deleted on HN ride in the first batch (or one of their own) for its writer to
    remove, under the writer pool. Never more than `request.max_batches` batches."""
    now = time.time() if now is None else now
    story_ids = select_story_ids(request.mode, hn, store, request.window, request.max_stories,
                                 include_done=request.reindex and request.mode == "backfill", now=now)
    threads, reingest, refresh, removed = ThreadConfig(), [], [], {}
    if request.mode in ("new", "reindex"):
        reingest, refresh, removed = follow_changes(hn, store, threads, request.recheck_limit, now)
        story_ids = reingest + [i for i in story_ids if i not in set(reingest)]
    story_ids = story_ids[: request.max_batches * request.batch_size]
    reindex_slice, progress, job = _reindex_slice(request, store, story_ids, len(refresh), now)
    fingerprint = pipeline_fingerprint(EmbeddingConfig().model_name, ChunkConfig())
    # An edited story is fetched whole: its page may be unchanged, its title (in every chunk) is not.
    known = validators([i for i in story_ids if i not in set(reingest)], store, fingerprint) \
        if request.conditional else {}
    if job is not None and job.conditional:
        known.update(validators(reindex_slice, store, fingerprint))
    spare = request.max_batches - _batch_count(len(story_ids), request.batch_size) \
        - _batch_count(len(reindex_slice), request.reindex_batch_size)
    refresh = refresh[: max(0, spare) * request.batch_size]
    batches = plan_batches(story_ids, request.batch_size, known, threads.enabled, refresh,
                           reindex_slice, request.reindex_batch_size)
    _stage_stored_threads(batches, store, request.run_id)
    if removed:
        if not batches:
            batches.append({"number": 0, "story_ids": [], "thread_ids": [], "validators": {},
                            "label": f"batch 0: remove {len(removed)} stories"})
        batches[0]["removed"] = {str(i): why for i, why in removed.items()}
    return RunPlan(batches, story_ids, reingest, refresh, removed, reindex_slice, progress)


def _reindex_slice(request: RunRequest, store: ChunkStore, story_ids: list[int], refreshes: int,
                   now: float) -> tuple[list[int], ReindexProgress | None, ReindexJob | None]:
    """Start or cancel a reindex as asked, then this run's slice of it (what the run's batches leave room for)."""
    if request.cancel_reindex:
        store.jobs.cancel_reindex(now)
    if request.mode == "reindex":
        store.jobs.start_reindex(request.conditional, now)
    job = store.jobs.reindex() if request.mode != "backfill" else None
    if job is None or not job.active or request.mode == "new":  # hn_reindex's runs carry it, not the live ones
        return [], None, job
    progress = store.jobs.reindex_progress(job, now)
    room = (request.max_batches - _batch_count(len(story_ids), request.batch_size)
            - _batch_count(refreshes, request.batch_size)) * request.reindex_batch_size
    size = min(request.reindex_per_run, room)
    if size <= 0:  # this run's own stories fill it: the reindex goes on in the next
        return [], progress, job
    taken = set(story_ids)  # new stories of this run: ingested here anyway
    return [i for i in store.jobs.next_reindex_slice(job, size) if i not in taken], progress, job


def _batch_count(stories: int, batch_size: int) -> int:
    return -(-stories // batch_size)


def _stage_stored_threads(batches: list[dict], store: ChunkStore, run_id: str) -> None:
    """What the store holds of each thread, staged per batch: extract embeds only comment chunks that changed."""
    from include.pipeline.staging import batch_key, write_json

    for batch in batches:
        if batch["thread_ids"]:
            # A story never written has no comment chunks: new stories cost no chunk query (on Milvus
            # Lite each is a pass over every chunk: seconds at a million).
            known = list(store.ledger.states(batch["thread_ids"]))
            stored = {i: {} for i in batch["thread_ids"]} | (store.writer.comment_hashes(known) if known else {})
            batch["stored_threads"] = write_json(batch_key(run_id, batch["number"], ".threads.json"),
                                                 {str(i): {str(k): h for k, h in hashes.items()}
                                                  for i, hashes in stored.items()})


def follow_changes(hn: HackerNewsClient, store: ChunkStore, threads: ThreadConfig, recheck_limit: int,
                   now: float) -> tuple[list[int], list[int], dict[int, str]]:
    """Lifecycle and thread refreshes of a scheduled or manual run: (stories to ingest again, threads due,
    stories to remove with why).

    Stories HN lists as changed and stories whose thread is due are compared with their items: killed
    or deleted ones are to be removed, edited ones come back for a new ingest."""
    from include.hn.lifecycle import check_stories

    due = store.ledger.due_threads(threads, now, threads.refreshes_per_run) if threads.enabled else []
    candidates = store.ledger.recheck_candidates(hn.updated_item_ids(), recheck_limit) if recheck_limit else {}
    candidates.update(store.ledger.states(due))
    changes = check_stories(hn, candidates, now)
    refresh = [i for i in due if i not in changes.removed and i not in changes.reingest]
    return changes.reingest, refresh, changes.removed


def _not_done(offered: list[int], store: ChunkStore, now: float) -> list[int]:
    """Drop stories already ingested or skipped, and failed ones not due (waiting, or out of attempts)."""
    states = store.ledger.states(offered)
    return [i for i in offered if (state := states.get(i)) is None or is_due(state, now)]


def is_due(state: dict, now: float) -> bool:
    return state["status"] == "failed" and 0 < int(state["next_attempt_at"]) <= now


def validators(story_ids: list[int], store: ChunkStore, fingerprint: str) -> dict[str, list[str]]:
    """ETag and Last-Modified of stories stored by this same pipeline (model, chunking): only then
    does a 304 mean the stored chunks are still right. Keys are strings (XCom is JSON)."""
    found = {}
    for story_id, state in store.ledger.states(story_ids).items():
        if state["status"] == "ingested" and state["fingerprint"] == fingerprint and (
                state["etag"] or state["last_modified"]):
            found[str(story_id)] = [state["etag"], state["last_modified"]]
    return found


def plan_batches(story_ids: list[int], batch_size: int, known: dict[str, list[str]] | None = None,
                 threads: bool = False, refresh_ids: list[int] | None = None, reindex_ids: list[int] = (),
                 reindex_batch_size: int = REINDEX_BATCH_SIZE) -> list[dict]:
    """Micro-batches as small dicts (XCom-sized), each labelled for the Airflow grid view, each with
    the validators of its stories (`validators`) for a conditional refetch.

    `threads`: each batch also reads its stories' comment threads (`thread_ids`). `reindex_ids`: a
    reindex's slice, in batches of `reindex_batch_size` after the new stories, marked `background`
    (their processes yield the CPU to live ones). `refresh_ids`: stories
    whose thread alone is due; they go in batches of their own after the pages, so a big thread never
    holds up new stories."""
    known = known or {}
    batches = []
    for ids, size, what in ((story_ids, batch_size, "stories"), (list(reindex_ids), reindex_batch_size, "reindexed")):
        for start in range(0, len(ids), size):
            part = ids[start : start + size]
            batches.append({"number": len(batches), "story_ids": part,
                            "label": f"batch {len(batches)}: {len(part)} {what} {min(part)}-{max(part)}",
                            "validators": {str(i): known[str(i)] for i in part if str(i) in known},
                            "thread_ids": list(part) if threads else [],
                            **({"background": True} if what == "reindexed" else {})})
    story_ids = [*story_ids, *reindex_ids]
    refresh_ids = [i for i in refresh_ids or [] if i not in set(story_ids)]
    for start in range(0, len(refresh_ids), batch_size):
        ids = refresh_ids[start : start + batch_size]
        batches.append({"number": len(batches), "story_ids": [], "thread_ids": ids, "validators": {},
                        "label": f"batch {len(batches)}: {len(ids)} threads {min(ids)}-{max(ids)}"})
    return batches

