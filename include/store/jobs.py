"""Jobs that span runs, kept in the store (`hn_jobs`) so a crash, a kill or a restart loses nothing.

One job kind today: the reindex. It re-ingests every story the store knows (ingested or failed), a
slice per run, in story-id order. A story counts as done once its state was written after the job
began (`updated_at >= started_at`): the writer protocol marks it, not the job. The job keeps only a
cursor (the last id handed out) so that a slice whose batch fails whole does not come back at once and
stand the reindex still: the next run takes the ids after it. At the end of a pass the cursor goes back to
the start and the stories left (a killed run's slice, a failed batch's) are taken again; after
`MAX_PASSES` passes the ones still left are given up, counted in the job, and it finishes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from include.store.collections import CONSISTENCY, JOBS_COLLECTION, STORIES_COLLECTION, count, first_page

REINDEX = "reindex"
_REINDEXED = ("ingested", "failed")  # what a reindex takes: skipped and removed stories stay as they are
# Passes over the store before the stories still not redone are given up (a page that fails a whole batch).
MAX_PASSES = 3


@dataclass(frozen=True)
class ReindexJob:
    started_at: int  # Unix seconds; a story whose state was written since is done
    total: int  # stories to reindex when it began
    conditional: bool = True  # refetch with the stored validators (a 304 keeps the chunks)
    finished_at: int = 0
    cancelled_at: int = 0
    cursor: int = 0  # the last story id handed out in this pass
    passes: int = 0  # passes over the store begun again from the start
    given_up: int = 0  # stories still not redone after MAX_PASSES passes

    @property
    def active(self) -> bool:
        return not self.finished_at and not self.cancelled_at


@dataclass(frozen=True)
class ReindexProgress:
    done: int
    total: int
    remaining: int
    seconds_left: float | None  # estimated from the pace so far; None before any story is done
    state: str  # running, finished, cancelled
    given_up: int = 0  # not redone after every pass (each batch they were in failed whole)


class JobStore:
    """Reads and writes jobs, and the reindex's slices and progress, through a `pymilvus.MilvusClient`."""

    def __init__(self, client) -> None:
        self.client = client

    def reindex(self) -> ReindexJob | None:
        rows = self.client.query(JOBS_COLLECTION, filter=f'name == "{REINDEX}"', output_fields=["state"],
                                 consistency_level=CONSISTENCY)
        return ReindexJob(**json.loads(rows[0]["state"])) if rows else None

    def start_reindex(self, conditional: bool, now: float | None = None) -> ReindexJob:
        """Begin a reindex of every story stored now (a running one starts over: all are taken again)."""
        started = int(time.time() if now is None else now)
        job = ReindexJob(started, count(self.client, STORIES_COLLECTION, f"status in {list(_REINDEXED)}"),
                         conditional)
        self._put(job)
        return job

    def cancel_reindex(self, now: float | None = None) -> ReindexJob | None:
        job = self.reindex()
        if job is not None and job.active:
            job = ReindexJob(**{**asdict(job), "cancelled_at": int(time.time() if now is None else now)})
            self._put(job)
        return job

    def next_reindex_slice(self, job: ReindexJob, limit: int) -> list[int]:
        """Up to `limit` stories not reindexed yet after the job's cursor, in id order; at the end of a pass
        the ones left are taken from the start again; finishes the job when none is left (or gives them up
        after `MAX_PASSES`)."""
        remaining = self._remaining_filter(job)
        rows = first_page(self.client, STORIES_COLLECTION, f"{remaining} and story_id > {job.cursor}", ["story_id"],
                          limit)
        if not rows and job.cursor:  # the end of a pass: what is left was lost or failed on the way
            job = ReindexJob(**{**asdict(job), "cursor": 0, "passes": job.passes + 1})
            if job.passes >= MAX_PASSES:
                self._put(ReindexJob(**{**asdict(job), "finished_at": int(time.time()),
                                        "given_up": count(self.client, STORIES_COLLECTION, remaining)}))
                return []
            rows = first_page(self.client, STORIES_COLLECTION, remaining, ["story_id"], limit)
        ids = [int(r["story_id"]) for r in rows]
        self._put(ReindexJob(**{**asdict(job), "cursor": max(ids)}) if ids else
                  ReindexJob(**{**asdict(job), "finished_at": int(time.time())}))
        return ids

    def reindex_progress(self, job: ReindexJob, now: float | None = None) -> ReindexProgress:
        """Done / total and the time left at the pace so far; two count queries, whatever the store holds."""
        now = time.time() if now is None else now
        remaining = count(self.client, STORIES_COLLECTION, self._remaining_filter(job)) if job.active else 0
        done = max(0, job.total - remaining - job.given_up)
        elapsed = (job.finished_at or job.cancelled_at or now) - job.started_at
        left = remaining * elapsed / done if done and job.active else (0.0 if not job.active else None)
        # Every story written since it began: finished, whether or not a run has recorded it yet.
        state = ("running" if remaining else "finished") if job.active else \
            "finished" if job.finished_at else "cancelled"
        return ReindexProgress(done, job.total, remaining, left, state, job.given_up)

    @staticmethod
    def _remaining_filter(job: ReindexJob) -> str:
        return f"status in {list(_REINDEXED)} and updated_at < {job.started_at}"

    def _put(self, job: ReindexJob) -> None:
        self.client.upsert(JOBS_COLLECTION, [{"name": REINDEX, "state": json.dumps(asdict(job)),
                                              "updated_at": int(time.time()), "unused_vector": [0.0, 0.0]}])
