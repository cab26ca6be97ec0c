"""A reindex of a store bigger than one run may map: slices across runs, resumable, cancellable.

Against a real Milvus Lite store and the replay's API; the writes of each run are the ledger's own
(the states a run writes are what marks a story done). Airflow refuses to map more than
`[core] max_map_length` items: here it is 5 batches of 10, and the store holds 230 stories (23 batches).
"""

from __future__ import annotations

import pytest

from include.hn.client import HackerNewsClient
from include.pipeline.planning import RunRequest, plan_batches, plan_run
from include.records import StoryOutcome
from include.store import ChunkStore
from include.store.client import close_client, open_client
from tests.replay_server import ReplayServer

STORIES = 230
MAX_BATCHES = 5


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("HN_INGEST_COMMENTS", "false")  # threads are not what this test is about
    replay = ReplayServer()
    replay.newstories_limit = 0
    client = open_client(str(tmp_path / "milvus.db"))
    store = ChunkStore(client)
    store.schema.ensure_collections()
    store.ledger.write_states([StoryOutcome(i, "ingested", f"Story {i}", f"https://example.com/{i}", chunk_count=1)
                               for i in range(1, STORIES + 1)] + [StoryOutcome(9999, "skipped")], [], now=1_000)
    with replay:
        yield HackerNewsClient(base_url=replay.api_url, algolia_url=replay.algolia_url), store
    close_client(client, str(tmp_path / "milvus.db"))


def request(mode="new", **kwargs) -> RunRequest:
    return RunRequest(mode, "run", batch_size=10, max_batches=MAX_BATCHES, reindex_per_run=40, **kwargs)


def write(store: ChunkStore, plan, now: float) -> None:
    """What the run's writers record: a state per story of its batches."""
    ids = [i for batch in plan.batches for i in batch["story_ids"]]
    store.ledger.write_states([StoryOutcome(i, "ingested", f"Story {i}", chunk_count=1) for i in ids], [], now=int(now))


def test_a_reindex_goes_a_bounded_slice_per_run_resumes_after_a_lost_run_and_covers_every_story(world):
    hn, store = world
    taken: list[list[int]] = []
    now = 2_000.0
    plan = plan_run(request("reindex"), hn, store, now=now)
    lost: list[int] = []
    while plan.reindex_slice:
        assert len(plan.batches) <= MAX_BATCHES and len(plan.reindex_slice) <= 40
        taken.append(plan.reindex_slice)
        if len(taken) == 2:  # this run is killed before its writes: its slice comes again at the end of the pass
            lost = plan.reindex_slice
        else:
            now += 15
            write(store, plan, now)
        # The live DAG's runs take no slice: hn_reindex's runs carry the job.
        assert plan_run(request(), hn, store, now=now).reindex_slice == []
        plan = plan_run(request("continue_reindex"), hn, store, now=now)
    every = [i for part in taken for i in part]
    assert taken[-1] == lost and sorted(every) == sorted(list(range(1, STORIES + 1)) + lost)  # all; the lost twice
    job = store.jobs.reindex()
    assert job.finished_at and not job.active and plan.batches == []  # the next run is idle again
    progress = store.jobs.reindex_progress(job, now)
    assert (progress.done, progress.total, progress.state, progress.given_up) == (STORIES, STORIES, "finished", 0)


def test_a_slice_whose_batch_always_fails_does_not_stand_the_reindex_still_and_is_given_up(world):
    hn, store = world
    plan = plan_run(request("reindex"), hn, store, now=2_000)
    poisoned = plan.reindex_slice  # its batch fails whole on every try: its states are never written
    now, slices = 2_000.0, 0
    while plan.reindex_slice:
        slices += 1
        assert slices < 20, "the reindex stands still"
        if plan.reindex_slice != poisoned:
            now += 15
            write(store, plan, now)
        plan = plan_run(request("continue_reindex"), hn, store, now=now)
    progress = store.jobs.reindex_progress(store.jobs.reindex(), now)
    # Every other story done; the poisoned slice tried once per pass (3), then given up and counted.
    assert (progress.state, progress.done, progress.given_up) == ("finished", STORIES - 40, 40)
    assert slices == -(-(STORIES - 40) // 40) + 3


def test_progress_counts_what_was_written_and_a_cancel_stops_the_slices(world):
    hn, store = world
    first = plan_run(request("reindex"), hn, store, now=2_000)
    assert first.reindex.total == STORIES and first.reindex.done == 0 and first.reindex.seconds_left is None
    write(store, first, 2_060)
    second = plan_run(request("continue_reindex"), hn, store, now=2_060)
    assert second.reindex.done == 40 and second.reindex.remaining == STORIES - 40
    assert second.reindex.seconds_left == pytest.approx((STORIES - 40) * 60 / 40)
    cancelled = plan_run(request("continue_reindex", cancel_reindex=True), hn, store, now=2_070)
    assert cancelled.reindex_slice == [] and cancelled.batches == []
    assert store.jobs.reindex_progress(store.jobs.reindex()).state == "cancelled"


def test_a_slice_goes_in_its_own_larger_batches_after_the_new_stories(world):
    hn, store = world
    plan = plan_run(RunRequest("reindex", "run", batch_size=2, max_batches=MAX_BATCHES, reindex_per_run=40,
                               reindex_batch_size=20), hn, store, now=2_000)
    sizes = [len(b["story_ids"]) for b in plan.batches]
    assert sizes == [20, 20] and all("reindexed" in b["label"] for b in plan.batches), plan.batches
    assert all(b["background"] for b in plan.batches)  # their processes yield the CPU to live batches
    mixed = plan_batches([1, 2, 3], 2, reindex_ids=[4, 5], reindex_batch_size=2)
    assert [bool(b.get("background")) for b in mixed] == [False, False, True]
    # Room is counted in the slice's batches: 5 batches of 20 hold at most 100 stories of a slice.
    wide = plan_run(RunRequest("continue_reindex", "run", batch_size=2, max_batches=MAX_BATCHES, reindex_per_run=500,
                               reindex_batch_size=20), hn, store, now=2_010)
    assert len(wide.batches) == MAX_BATCHES and len(wide.reindex_slice) == MAX_BATCHES * 20
