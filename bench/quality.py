"""Bench 6: content quality of what ends up in Milvus, against the corpus ground truth.

    python -m bench.quality     # needs the database of `python -m bench.bulk_ingest`

For every page with a ground-truth `.txt`: bag-of-words token precision/recall/F1 of the page's chunks
joined, against the truth; for `.snippets.json` pages, the share of `with` snippets present and of
`without` snippets absent. The same for trafilatura's `extract` (the reference) and for Unstructured
on the whole page (no main-content step), in the same run. Retrieval: a sentence from the middle of
each page's ground truth as the query (never the title, which every chunk's embedding carries): is the
page's story in the top 5 (recall@5), and at which rank (MRR)?
"""

from __future__ import annotations

import json
import re
from collections import Counter
from statistics import mean

from bench.common import RESULTS, corpus_ok, print_table
from include.fetch import decode_html
from tests.corpus import middle_sentence
from tests.replay_server import ReplayServer, load_corpus


def tokens(text: str) -> Counter:
    return Counter(re.findall(r"\w+", text.lower()))


def prf(candidate: str, truth: str) -> tuple[float, float, float]:
    got, want = tokens(candidate), tokens(truth)
    overlap = sum((got & want).values())
    precision = overlap / max(1, sum(got.values()))
    recall = overlap / max(1, sum(want.values()))
    return precision, recall, (2 * precision * recall / (precision + recall) if overlap else 0.0)


def normalized(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def snippet_scores(candidate: str, snippets: dict) -> tuple[list[float], list[float]]:
    text = normalized(candidate)
    present = [1.0 if normalized(s) in text else 0.0 for s in snippets.get("with", [])]
    absent = [1.0 if normalized(s) not in text else 0.0 for s in snippets.get("without", [])]
    return present, absent


def load_mapping() -> dict:
    """Story id → corpus page, as the bulk run's replay mapped them."""
    return load_corpus(ReplayServer(), url_stories=200, text_posts=0, dead=0, deleted=0)


def main() -> None:
    corpus_ok()
    import trafilatura

    from include.partition import partition_page

    dump = RESULTS / "bulk" / "data" / "chunks.json"
    if not dump.is_file():
        raise SystemExit("run `python -m bench.bulk_ingest` first: this bench reads its Milvus database")
    status = json.loads(dump.read_text())
    texts: dict[int, list[str]] = {}
    for row in sorted(status["chunk_rows"], key=lambda r: (r["story_id"], r["chunk_index"])):
        texts.setdefault(row["story_id"], []).append(row["text"])
    mapping = load_mapping()

    systems = {"hn_ingest (Milvus)": [], "trafilatura.extract": [], "unstructured, whole page": []}
    snippets = {name: ([], []) for name in systems}
    for story_id, page in mapping.items():
        if page.truth_text is None and page.snippets is None:
            continue
        html = decode_html(page.body, page.charset or None)
        candidates = {
            "hn_ingest (Milvus)": "\n".join(texts.get(story_id, [])),
            "trafilatura.extract": trafilatura.extract(html) or "",
            "unstructured, whole page": "\n".join(e.text for e in partition_page(html, main_content_only=False)),
        }
        for name, candidate in candidates.items():
            if page.truth_text is not None:
                systems[name].append(prf(candidate, page.truth_text))
            if page.snippets is not None:
                present, absent = snippet_scores(candidate, page.snippets)
                snippets[name][0].extend(present)
                snippets[name][1].extend(absent)

    rows = []
    for name, scores in systems.items():
        p, r, f = (mean(s[i] for s in scores) for i in range(3))
        present, absent = snippets[name]
        rows.append((name, f"P {p:.3f}  R {r:.3f}  F1 {f:.3f} over {len(scores)} pages;  "
                           f"snippets with {mean(present):.3f}, without {mean(absent):.3f} ({len(present)}/{len(absent)})"))
    rows.append(("retrieval: truth sentence -> story, dense", retrieval(mapping)))
    print_table("Content quality against the corpus ground truth", rows, "quality.txt")


def retrieval(mapping) -> str:
    from include.config import EmbeddingConfig
    from include.embedding import embed_texts
    from include.milvus_client import close_client, open_client
    from include.milvus_store import ChunkStore

    uri = str(RESULTS / "bulk" / "data" / "milvus.db")
    client = open_client(uri)
    try:
        store = ChunkStore(client)
        store.ensure_collections()
        queries = {i: q for i, page in mapping.items() if page.truth_text and (q := middle_sentence(page.truth_text))}
        vectors = embed_texts(list(queries.values()), EmbeddingConfig())
        ranks = []
        for story_id, vector in zip(queries, vectors, strict=True):
            found = list(dict.fromkeys(h["story_id"] for h in store.search(vector, k=20)))  # stories, best first
            ranks.append(found.index(story_id) + 1 if story_id in found else None)
    finally:
        close_client(client, uri)
    hits = sum(1 for r in ranks if r is not None and r <= 5)
    mrr = mean(1 / r if r else 0.0 for r in ranks)
    return f"recall@5 {hits / len(ranks):.3f} ({hits}/{len(ranks)}), MRR {mrr:.3f}"



if __name__ == "__main__":
    main()
