"""The retrieval API (`include.store.search`) against a real Milvus Lite store embedded by the real model (BM25
and hybrid also through `milvus-lite server`), and its dense fallback on a Milvus server that predates BM25
(the 2.3.5 server of tests/milvus_server.py)."""

from __future__ import annotations

import logging

import pytest

from include.config import EmbeddingConfig
from include.embed.model import embed_texts
from include.parse.chunking import embedding_input
from include.records import Chunk, StoryOutcome
from include.store import ChunkStore
from include.store.client import close_client, open_client
from include.store.search import MAX_QUERY_CHARS, Filters, FullTextUnavailable, InvalidQuery, document, search

DAY = 86_400
T0 = 1_609_200_000  # 2020-12-29
# story id: (title, url, posted_at, points, chunk texts)
STORIES = {
    1: ("Log4Shell explained", "https://www.lunasec.io/log4shell", T0, 900, [
        "CVE-2021-44228 lets an attacker run code through a JNDI lookup in a logged string.",
        "Upgrade log4j-core to 2.17 or remove the JndiLookup class from the classpath.",
        "Many Java services logged user agents, which is how the exploit spread so quickly."]),
    2: ("Sourdough at home", "https://bread.example.com/sourdough", T0 - 3 * DAY, 40, [
        "Feed the starter twice a day with equal weights of flour and water until it doubles.",
        "Bake the loaf in a covered pot at a high temperature so the crust stays thin and crisp."]),
    3: ("Running Postgres on a laptop", "https://github.com/pg/laptop", T0 - DAY, 120, [
        "Tune shared_buffers and work_mem when the database runs beside a browser on 8 GB of memory.",
        "pg_stat_statements shows which queries are slow before you add an index."]),
    4: ("A walk through the Alps", "https://travel.example.org/alps", T0 - 10 * DAY, 5, [
        "The trail climbs from the valley to a hut where hikers sleep before crossing the glacier."]),
}


def write_stories(store: ChunkStore) -> None:
    chunks = [Chunk(sid, i, title, url, text, posted_at=posted, points=points, comments=points // 10)
              for sid, (title, url, posted, points, texts) in STORIES.items() for i, text in enumerate(texts)]
    vectors = embed_texts([embedding_input(c.title, c.text) for c in chunks], EmbeddingConfig())
    outcomes = [StoryOutcome(sid, "ingested", title, url, chunk_count=len(texts))
                for sid, (title, url, _, _, texts) in STORIES.items()]
    outcomes.append(StoryOutcome(5, "failed", "Down", "https://down.example.com", reason="story 5: fetch: HTTP 503",
                                 stage="fetch"))
    store.writer.write_batch(chunks, vectors, outcomes)


@pytest.fixture(scope="module")
def lite_store(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("retrieval") / "milvus.db")
    client = open_client(uri)
    store = ChunkStore(client)
    store.schema.ensure_collections()
    write_stories(store)
    yield store
    close_client(client, uri)


def ids(result) -> list[int]:
    return [s.story_id for s in result.stories]


@pytest.fixture(params=["lite", "milvus-lite server"])
def full_text_store(request):
    """The embedded Lite store, or a fresh one served by `milvus-lite server` over gRPC (the README's way
    to BM25 and hybrid search for many clients; the 2.3.5 server has no BM25)."""
    if request.param == "lite":
        yield request.getfixturevalue("lite_store")
        return
    server = request.getfixturevalue("milvus_lite_server")
    client = open_client(server.uri)
    try:
        for name in client.list_collections():
            client.drop_collection(name)
        store = ChunkStore(client)
        store.schema.ensure_collections()
        write_stories(store)
        yield store
    finally:
        close_client(client, server.uri)


def test_every_mode_finds_an_exact_term_and_hybrid_and_dense_a_paraphrase(full_text_store):
    store = full_text_store
    assert store.schema.has_full_text()
    for mode in ("text", "hybrid", "dense"):
        assert ids(search(store, "CVE-2021-44228", 2, mode))[0] == 1, mode
    # No word in common with the page: BM25 finds nothing relevant, the embedding does.
    paraphrase = "how do I keep a bread yeast culture alive"
    assert ids(search(store, paraphrase, 1, "dense")) == [2]
    assert ids(search(store, paraphrase, 1, "hybrid")) == [2]
    assert search(store, "JndiLookup", 3, "text").stories[0].chunks[0]["chunk_index"] == 1


def test_a_story_appears_once_with_its_best_chunks_in_order(lite_store):
    result = search(lite_store, "log4j exploit JNDI lookup in Java logging", 4, "hybrid", chunks_per_story=2)
    assert len(ids(result)) == len(set(ids(result))) and ids(result)[0] == 1
    best = result.stories[0]
    assert len(best.chunks) == 2 and best.chunks[0]["score"] >= best.chunks[1]["score"]
    assert (best.url, best.domain, best.points, best.posted_at, best.comments) == (
        "https://www.lunasec.io/log4shell", "lunasec.io", 900, T0, 90)
    assert best.hn_url == "https://news.ycombinator.com/item?id=1"
    assert result.stories == sorted(result.stories, key=lambda s: -s.score)


@pytest.mark.parametrize("filters, expected", [
    (Filters(since=T0 - DAY), {1, 3}),
    (Filters(until=T0 - DAY), {2, 4}),
    (Filters(since=T0 - 4 * DAY, until=T0), {2, 3}),
    (Filters(min_points=100), {1, 3}),
    (Filters(domain="github.com"), {3}),
    (Filters(domain="www.lunasec.io"), {1}),
    (Filters(kind="page", min_points=41), {1, 3}),
])
def test_filters_keep_only_matching_stories(lite_store, filters, expected):
    for mode in ("dense", "hybrid", "text"):
        query = "the" if mode == "text" else "anything at all"  # "the" is in every story's text
        assert set(ids(search(lite_store, query, 10, mode, filters))) == expected, mode


def test_the_whole_document_and_the_state_of_a_story(lite_store):
    doc = document(lite_store, 1)
    assert doc["status"] == "ingested" and [c["chunk_index"] for c in doc["chunks"]] == [0, 1, 2]
    assert [c["text"] for c in doc["chunks"]] == STORIES[1][4]
    failed = document(lite_store, 5)
    assert failed["status"] == "failed" and "HTTP 503" in failed["reason"] and failed["chunks"] == []
    assert document(lite_store, 999) is None


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, "k must be between 1 and 50"),
    ({"k": 51}, "k must be between 1 and 50"),
    ({"mode": "fuzzy"}, "mode must be one of"),
    ({"query": "   "}, "the query is empty"),
    ({"query": "x" * 10_000}, f"at most {MAX_QUERY_CHARS}"),
    ({"filters": Filters(domain='a.com" or story_id > 0 or "')}, "domain must be a host name"),
    ({"filters": Filters(kind="story")}, "kind must be one of page, comment"),
    ({"chunks_per_story": 0}, "chunks per story"),
    ({"filters": Filters(min_points=10**30)}, "min_points must be between 0 and"),  # past INT64: a Milvus 5xx before
    ({"filters": Filters(since=2**63)}, "since must be between 0 and"),
    ({"filters": Filters(until=-1)}, "until must be between 0 and"),
])
def test_bad_requests_are_refused_with_the_argument_named(lite_store, kwargs, message):
    args = {"query": "log4j", "k": 5, "mode": "hybrid", **kwargs}
    with pytest.raises(InvalidQuery, match=message):
        search(lite_store, **args)


def test_a_server_without_bm25_searches_dense_and_says_so(fresh_milvus_server, caplog):
    client = open_client(fresh_milvus_server.uri)
    try:
        store = ChunkStore(client)
        with caplog.at_level(logging.WARNING, logger="include.store.schema"):
            store.schema.ensure_collections()
        assert "no BM25 full-text search" in caplog.text and not store.schema.has_full_text()
        write_stories(store)
        result = search(store, "CVE-2021-44228 log4j", 2, "hybrid")
        assert result.mode == "dense" and "no full-text index" in result.notice and ids(result)[0] == 1
        with pytest.raises(FullTextUnavailable, match="use mode=dense or hybrid"):
            search(store, "CVE-2021-44228", 2, "text")
        assert set(ids(search(store, "anything", 10, "dense", Filters(min_points=100)))) == {1, 3}
    finally:
        close_client(client, fresh_milvus_server.uri)
