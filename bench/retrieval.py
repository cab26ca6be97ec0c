"""Bench 7: retrieval quality and latency of `include.store.search` on the corpus store, per mode.

    python -m bench.retrieval     # needs the database of `python -m bench.bulk_ingest`

Queries that are not the stories' titles (every chunk's embedding carries its title, so title → story
would be near-certain):
- sentences: a full sentence from the middle of each page's ground truth;
- snippets: the first `with` snippet of each page that has a `.snippets.json` (short passages);
- questions: natural questions written about pages' content (`bench/questions.json`, each naming the
  page that answers it), half naming an exact term, half paraphrasing;
- user questions: a second, larger set written the way users ask (`bench/questions_users.json`): no run
  of four words copied from the page, vaguer and shorter; the set no search setting was tuned on.
For each mode: recall@5 (the page's story among the first 5 stories) and MRR over the first 20 stories,
and the latency of one `search` call in this process (p50/p95, warm: the model and the store loaded).
Hybrid is measured with three rankers: reciprocal rank fusion with k=20 (the default) and k=60, and a
weighted sum.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from statistics import mean, quantiles

from bench.common import RESULTS, corpus_ok, print_table
from include.config import PROJECT_ROOT
from tests.corpus import middle_sentence
from tests.replay_server import ReplayServer, load_corpus

QUESTIONS = PROJECT_ROOT / "bench" / "questions.json"
USER_QUESTIONS = PROJECT_ROOT / "bench" / "questions_users.json"
DEPTH = 20


def truth_queries(mapping) -> dict[str, dict[str, int]]:
    """Query text → the story id that should come first: sentences and snippets of the truths."""
    sentences = {q: i for i, page in mapping.items() if page.truth_text and (q := middle_sentence(page.truth_text))}
    snippets = {page.snippets["with"][0]: i for i, page in mapping.items()
                if page.snippets and page.snippets.get("with") and len(page.snippets["with"][0].split()) >= 4}
    return {"sentences": sentences, "snippets": snippets}


def question_queries(mapping, path: Path = QUESTIONS) -> dict[str, int]:
    by_page = {page.name: story_id for story_id, page in mapping.items()}
    return {q["question"]: by_page[q["page"]] for q in json.loads(path.read_text())["questions"]}


def evaluate(store, queries: dict[str, int], mode: str, embed_query, ranker=None) -> tuple[float, float, list[float]]:
    from include.store.search import search

    ranks, seconds = [], []
    for query, story_id in queries.items():
        started = time.perf_counter()
        found = [s.story_id for s in search(store, query, DEPTH, mode, embed_query=embed_query, ranker=ranker).stories]
        seconds.append(time.perf_counter() - started)
        ranks.append(found.index(story_id) + 1 if story_id in found else None)
    recall = sum(1 for r in ranks if r is not None and r <= 5) / len(ranks)
    return recall, mean(1 / r if r else 0.0 for r in ranks), seconds


def main() -> None:
    corpus_ok()
    from pymilvus import RRFRanker, WeightedRanker

    from include.config import EmbeddingConfig
    from include.embed.model import embed_texts
    from include.store import ChunkStore
    from include.store.client import close_client, open_client

    uri = str(RESULTS / "bulk" / "data" / "milvus.db")
    if not Path(uri).is_dir():
        raise SystemExit("run `python -m bench.bulk_ingest` first: this bench reads its Milvus database")
    mapping = load_corpus(ReplayServer(), url_stories=200, text_posts=0, dead=0, deleted=0)
    sets = {**truth_queries(mapping), "questions": question_queries(mapping),
            "user questions": question_queries(mapping, USER_QUESTIONS)}
    config = EmbeddingConfig()
    embed_query = lambda q: embed_texts([q], config)[0]  # noqa: E731 - in process: the latency is the search's
    embed_query("warm up the model")
    client = open_client(uri)
    rows = []
    try:
        store = ChunkStore(client)
        started = time.perf_counter()
        before = store.schema.schema_version("hn_chunks") if client.has_collection("hn_chunks") else None
        store.schema.ensure_collections()
        if before is not None and before < store.schema.schema_version("hn_chunks"):
            rows.append((f"store migrated from chunks schema v{before}",
                         f"{store.reader.count()} chunks in {time.perf_counter() - started:.1f} s"))
        modes = [("dense", "dense", None), ("text (BM25)", "text", None), ("hybrid, RRF k=20 (default)", "hybrid", None),
                 ("hybrid, RRF k=60", "hybrid", RRFRanker(60)),
                 ("hybrid, weighted 0.5/0.5", "hybrid", WeightedRanker(0.5, 0.5))]
        for set_name, queries in sets.items():
            for label, mode, ranker in modes:
                recall, mrr, seconds = evaluate(store, queries, mode, embed_query, ranker)
                cuts = quantiles(seconds, n=20)
                rows.append((f"{set_name} ({len(queries)}), {label}",
                             f"recall@5 {recall:.3f}  MRR {mrr:.3f}  search p50 {cuts[9] * 1000:.0f} ms, "
                             f"p95 {cuts[18] * 1000:.0f} ms"))
    finally:
        close_client(client, uri)
    print_table("Retrieval: page content → its story, per mode (warm, in process)", rows, "retrieval.txt")


if __name__ == "__main__":
    main()
