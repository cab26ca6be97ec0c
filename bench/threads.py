"""Bench: comment threads on the corpus's real threads: their size in chunks, and what a refresh costs
against a full re-embed of the same threads.

    python -m bench.threads

The 225 stories of the bulk bench (200 pages, 25 text posts) with their real comments (the dagster
snapshot). The replay first holds back the newest 20% of each thread's comments (by time), as a thread
read an hour after posting would miss them; the first read embeds what is there. Then every comment is
released and the thread read again: the refresh embeds only the chunks whose content hash is new, and
the full re-embed embeds every chunk of the same threads. Both in this process with the model loaded
(warm), best of 3 each; the first read is reported cold (it loads the model).
"""

from __future__ import annotations

import time
from statistics import median

from bench.common import corpus_ok, print_table
from include.config import ChunkConfig, EmbeddingConfig, ThreadConfig, pipeline_fingerprint
from include.embed.model import embed_texts
from include.hn.client import HackerNewsClient
from include.hn.threads import read_thread
from include.parse.chunking import TokenCounter, embedding_input
from include.parse.comments import comment_chunks, refresh
from include.records import chunk_key
from tests.replay_server import ReplayServer, load_corpus

HELD_BACK = 0.2
REPEATS = 3


def read_all(hn, story_ids, titles, counter, fingerprint):
    chunks = {}
    for story_id in story_ids:
        thread = read_thread(hn, story_id, titles[story_id], ThreadConfig())
        chunks[story_id] = comment_chunks(thread, counter, ChunkConfig(), fingerprint)
    return chunks


def embed_seconds(chunks) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        embed_texts([embedding_input(c.title, c.text) for c in chunks])
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    corpus_ok()
    replay = ReplayServer()
    load_corpus(replay, url_stories=200, text_posts=25, dead=0, deleted=0, comments=True)
    stories = {i: item for i, item in replay.items.items() if item and item.get("type") == "story"}
    comments = sorted((item["time"], i) for i, item in replay.items.items()
                      if item and item.get("type") == "comment" and item.get("time"))
    for _, comment_id in comments[int(len(comments) * (1 - HELD_BACK)):]:
        replay.release_at[comment_id] = float("inf")
    counter = TokenCounter(EmbeddingConfig().model_name)
    fingerprint = pipeline_fingerprint(counter.model_name, ChunkConfig())
    titles = {i: s["title"] for i, s in stories.items()}
    with replay:
        hn = HackerNewsClient(replay.api_url, replay.algolia_url)
        started = time.perf_counter()
        first = read_all(hn, stories, titles, counter, fingerprint)
        read_seconds = time.perf_counter() - started
        started = time.perf_counter()
        embed_texts([embedding_input(c.title, c.text) for cs in first.values() for c in cs])
        first_embed = time.perf_counter() - started
        replay.release_at.clear()
        started = time.perf_counter()
        grown = read_all(hn, stories, titles, counter, fingerprint)
        reread_seconds = time.perf_counter() - started
    stored = {i: {chunk_key(c): c.content_hash for c in cs} for i, cs in first.items()}
    todo = [c for i, cs in grown.items() for c in refresh(i, cs, stored[i], 0, 10**6)[0]]
    everything = [c for cs in grown.values() for c in cs]
    sizes = [len(cs) for cs in grown.values() if cs]
    refresh_s, full_s = embed_seconds(todo), embed_seconds(everything)
    print_table("comment threads (bench.threads)", [
        ("stories / with comments", f"{len(stories)} / {len(sizes)}"),
        ("comment chunks per story with comments", f"median {median(sizes):.0f}, max {max(sizes)}, "
                                                    f"total {len(everything)}"),
        ("first read (80% of comments): read, embed (cold)",
         f"{read_seconds:.1f} s for {len(stories)} threads, {first_embed:.1f} s for "
         f"{sum(len(cs) for cs in first.values())} chunks"),
        ("refresh (all comments): chunks embedded", f"{len(todo)} of {len(everything)} "
                                                     f"({len(todo) / len(everything):.0%})"),
        ("embedding: refresh vs full re-embed (warm, best of 3)",
         f"{refresh_s:.1f} s vs {full_s:.1f} s ({full_s / refresh_s:.1f}x less)"),
        ("re-reading the threads (HTTP over loopback)", f"{reread_seconds:.1f} s"),
    ], save_as="threads.txt")


if __name__ == "__main__":
    main()
