"""Bench 6: content quality of what ends up in Milvus, against the corpus ground truth.

    python -m bench.quality     # needs the database of `python -m bench.bulk_ingest`

For every page with a ground-truth `.txt`: bag-of-words token precision/recall/F1 of the page's chunks
joined, against the truth; for `.snippets.json` pages, the share of `with` snippets present and of
`without` snippets absent. The same for trafilatura's `extract` (the reference) and for Unstructured
on the whole page (no main-content step), in the same run (retrieval is `bench.retrieval`). Per page:
the discussion pages of the corpus (threads and forum topics, named below by their URLs: the evaluation set, not the detector),
and the 10 pages where hn_ingest scores lowest.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from statistics import mean

from bench.common import RESULTS, corpus_ok, print_table
from include.crawl.fetch import decode_html
from tests.replay_server import ReplayServer, load_corpus

# The corpus pages whose URL is itself a discussion. Their truths differ: the lobste.rs and forum
# truths hold the thread; the Slashdot one holds the summary and the comments; the Q&A truths hold
# the question and its answers.
DISCUSSION_PAGES = {
    "tiptopjaw-055": "lobste.rs thread",
    "tiptopjaw-059": "Slashdot discussion",
    "tiptopjaw-058": "Arch Linux forum topic",
    "tiptopjaw-061": "Rust users forum (Discourse)",
    "tiptopjaw-056": "Stack Overflow question and answers",
    "tiptopjaw-062": "Unix & Linux Stack Exchange question and answers",
}
OURS, REFERENCE = "hn_ingest (Milvus)", "trafilatura.extract"


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

    from include.parse.partition import partition_page

    dump = RESULTS / "bulk" / "data" / "chunks.json"
    if not dump.is_file():
        raise SystemExit("run `python -m bench.bulk_ingest` first: this bench reads its Milvus database")
    status = json.loads(dump.read_text())
    texts: dict[int, list[str]] = {}
    for row in sorted(status["chunk_rows"], key=lambda r: (r["story_id"], r["chunk_index"])):
        texts.setdefault(row["story_id"], []).append(row["text"])
    mapping = load_mapping()

    systems = {OURS: [], REFERENCE: [], "unstructured, whole page": []}
    per_page: dict[str, dict[str, float]] = {}
    snippets = {name: ([], []) for name in systems}
    for story_id, page in mapping.items():
        if page.truth_text is None and page.snippets is None:
            continue
        html = decode_html(page.body, page.charset or None)
        candidates = {
            OURS: "\n".join(texts.get(story_id, [])),
            REFERENCE: trafilatura.extract(html) or "",
            "unstructured, whole page": "\n".join(e.text for e in partition_page(html, main_content_only=False)),
        }
        for name, candidate in candidates.items():
            if page.truth_text is not None:
                systems[name].append(prf(candidate, page.truth_text))
                per_page.setdefault(page.name, {})[name] = systems[name][-1][2]
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
    for name, kind in DISCUSSION_PAGES.items():
        if name in per_page:
            rows.append((f"discussion page {name} ({kind})",
                         f"F1 {per_page[name][OURS]:.3f}  (trafilatura {per_page[name][REFERENCE]:.3f})"))
    worst = sorted(per_page, key=lambda name: per_page[name][OURS])[:10]
    rows.append(("worst 10 pages, F1 hn_ingest (trafilatura)",
                 "; ".join(f"{n} {per_page[n][OURS]:.3f} ({per_page[n][REFERENCE]:.3f})" for n in worst)))
    print_table("Content quality against the corpus ground truth", rows, "quality.txt")


if __name__ == "__main__":
    main()
