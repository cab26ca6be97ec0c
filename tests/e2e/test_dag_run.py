"""`airflow dags test hn_ingest` against a replay of real stories and pages from the corpus.

One replay and one Milvus Lite database for the module: the tests follow a user's day in order
(first run, a run with nothing new, a manual reindex) and check the store after each.
"""

from __future__ import annotations

import re

import pytest

from include.config import ChunkConfig, EmbeddingConfig
from include.parse.chunking import TokenCounter, embedding_input
from tests import corpus
from tests.airflow_cli import AirflowEnv
from tests.replay_server import ReplayServer, load_corpus

pytestmark = pytest.mark.e2e

URL_STORIES = 30


@pytest.fixture(scope="module")
def replay(require_corpus):
    server = ReplayServer()
    # Pages from every source of the corpus, not just the first one in the index.
    names = [p.name for p in corpus.pages()[::6]][:URL_STORIES]
    server.mapped = load_corpus(server, url_stories=URL_STORIES, text_posts=3, dead=3, deleted=2, page_names=names)
    with server:
        yield server


@pytest.fixture(scope="module")
def env(replay, airflow_home, tmp_path_factory) -> AirflowEnv:
    return AirflowEnv(airflow_home, tmp_path_factory.mktemp("data"), replay.connection_env())


@pytest.fixture(scope="module")
def first_run(env):
    result = env.dags_test()
    assert result.succeeded, result.log[-6000:]
    return result, env.status()


def _rows_by_story(status: dict) -> dict[int, dict]:
    return {row["story_id"]: row for row in status["story_rows"]}


def test_first_run_ingests_every_parsable_url_story_and_the_text_posts(replay, first_run):
    _, status = first_run
    rows = _rows_by_story(status)
    url_ids = set(replay.mapped)
    ingested = {i for i in url_ids if rows.get(i, {}).get("status") == "ingested"}
    problems = {i: rows.get(i) for i in url_ids - ingested}
    # A page may be unparsable (content only in scripts); it must then be recorded with its reason.
    assert all(row and row["status"] == "failed" and row["reason"] for row in problems.values()), problems
    assert len(ingested) >= URL_STORIES - 2, problems
    text_posts = [i for i, item in replay.items.items() if item and item.get("text") and not item.get("url")
                  and not item.get("dead") and not item.get("deleted")]
    assert len(text_posts) == 3
    for story_id in text_posts:
        assert rows[story_id]["status"] == "ingested" and rows[story_id]["chunk_count"] > 0
    # Every ingested story's chunks are there, once each.
    assert status["chunks"] == sum(r["chunk_count"] for r in rows.values() if r["status"] == "ingested")
    assert status["chunks"] == status["distinct_chunk_ids"] == status["distinct_story_chunk_pairs"]
    assert status["index_type"] == "IVF_FLAT"


def test_dead_and_deleted_stories_are_recorded_as_skipped_and_store_nothing(replay, first_run):
    _, status = first_run
    rows = _rows_by_story(status)
    gone = [i for i, item in replay.items.items() if item and (item.get("dead") or item.get("deleted"))]
    assert len(gone) == 5
    for story_id in gone:
        assert rows[story_id]["status"] == "skipped"
        assert re.search(r"dead|deleted", rows[story_id]["reason"])
        assert rows[story_id]["chunk_count"] == 0


def test_every_chunk_fits_the_model_window(env, first_run):
    rows = env.status(chunks=True)["chunk_rows"]
    counter = TokenCounter(EmbeddingConfig().model_name)
    sizes = [counter.count(embedding_input(r["title"], r["text"])) for r in rows]
    assert rows and max(sizes) <= ChunkConfig().max_tokens, max(sizes)


def test_a_sentence_from_a_page_finds_its_story(env, replay, first_run):
    _, status = first_run
    rows = _rows_by_story(status)
    checked = 0
    for story_id, page in replay.mapped.items():
        if rows[story_id]["status"] != "ingested" or not page.truth_text:
            continue
        sentence = corpus.middle_sentence(page.truth_text)
        if not sentence:
            continue
        for mode in ("hybrid", "dense", "text"):
            hits = env.search(sentence, 5, "--mode", mode)
            assert story_id in [h["story_id"] for h in hits], (mode, page.name, sentence, hits)
            assert len({h["story_id"] for h in hits}) == len(hits)  # a story appears once
        # Filters apply to the story: its own domain keeps it, another host or a future window drops it.
        story = next(h for h in hits if h["story_id"] == story_id)
        assert story_id in [h["story_id"] for h in env.search(sentence, 5, "--domain", story["domain"])]
        assert story_id not in [h["story_id"] for h in env.search(sentence, 5, "--domain", "example.org")]
        assert env.search(sentence, 5, "--since", "2100-01-01") == []
        checked += 1
        if checked == 3:
            break
    assert checked == 3


def test_a_second_run_fetches_and_embeds_nothing(env, replay, first_run):
    _, before = first_run
    pages_asked = replay.page_requests()
    result = env.dags_test()
    assert result.succeeded, result.log[-4000:]
    assert result.lines("new run: 0 stories (0 edited or back), 0 thread refreshes, 0 to remove, in 0 batches")
    assert not result.lines("embedded")
    assert replay.page_requests() == pages_asked
    after = env.status()
    assert after["chunks"] == before["chunks"]


def test_reindex_replaces_rows_in_place(env, replay, first_run):
    _, before = first_run
    pages_asked = replay.page_requests()
    result = env.dags_test({"reindex": True})
    assert result.succeeded, result.log[-4000:]
    known = sum(1 for r in before["story_rows"] if r["status"] in ("ingested", "failed"))
    # The reindex is a job of its own: this run takes every known story as its first (and only) slice.
    assert result.lines(f"reindex: 0 of {known} stories done, this run takes {known} more")
    assert replay.page_requests() > pages_asked
    after = env.status()
    assert after["chunks"] == before["chunks"]
    assert after["chunks"] == after["distinct_chunk_ids"] == after["distinct_story_chunk_pairs"]


def test_a_successful_run_logs_no_error_and_names_each_story(first_run):
    result, status = first_run
    # Native libraries' stderr (FAISS training a small segment's index) shows as ERROR unless routed.
    errors = [line for line in result.log.splitlines() if "[error" in line.lower() or " ERROR " in line]
    assert errors == [], errors[:5]
    assert not result.lines("Skipping masking") and not result.lines("Could not load library with AVX")
    assert result.lines("trained a segment's IVF index on a small batch")  # the FAISS line, at INFO
    title = next(r["title"] for r in status["story_rows"] if r["status"] == "ingested")
    assert [line for line in result.lines(" chunks") if repr(title[:80]) in line], title
