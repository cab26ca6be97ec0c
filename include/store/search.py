"""The retrieval API: stories for a query, best first, each with its best chunks; a story's whole text.

    from include.store.search import Filters, search
    result = search(store, "rust borrow checker", k=5, mode="hybrid", filters=Filters(min_points=10))

Modes: `dense` (the embedding, cosine), `text` (BM25 over the chunk text: exact terms such as a
library, a CVE id, a name) and `hybrid` (both, fused by reciprocal rank). A store on a Milvus server
without BM25 (before 2.5) answers `hybrid` with dense results and a notice, and refuses `text`.
The CLI (`python -m include.ops.search`) and the HTTP API (plugins/hn_providers/api) call these functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from include.store import ChunkStore

MODES = ("hybrid", "dense", "text")
KINDS = ("page", "comment")
MAX_K = 50
MAX_QUERY_CHARS = 2_000
MAX_CHUNKS_PER_STORY = 20
MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z in Unix seconds
MAX_POINTS = 1_000_000_000
_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$")


class InvalidQuery(ValueError):
    """The request cannot be answered as asked; the message says what to change."""


class FullTextUnavailable(InvalidQuery):
    """A text search on a store whose Milvus has no BM25 function."""


@dataclass(frozen=True)
class Filters:
    """Conditions on the story a chunk belongs to; None means no condition."""

    since: int | None = None  # posted at or after (Unix seconds)
    until: int | None = None  # posted before
    kind: str | None = None
    min_points: int | None = None
    domain: str | None = None  # the host without www., e.g. github.com

    def expression(self) -> str:
        """The Milvus filter, built from checked values only (no text of the caller's reaches it raw)."""
        if self.kind is not None and self.kind not in KINDS:
            raise InvalidQuery(f"kind must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if self.domain is not None and not _DOMAIN.match(self.domain):
            raise InvalidQuery(f"domain must be a host name such as github.com (got {self.domain[:100]!r})")
        # Milvus answers an integer past its field's range with an internal error: refuse it here, named.
        for name, value, highest in (("since", self.since, MAX_TIME), ("until", self.until, MAX_TIME),
                                     ("min_points", self.min_points, MAX_POINTS)):
            if value is not None and not 0 <= int(value) <= highest:
                raise InvalidQuery(f"{name} must be between 0 and {highest} (got {value})")
        terms = []
        if self.since is not None:
            terms.append(f"posted_at >= {int(self.since)}")
        if self.until is not None:
            terms.append(f"posted_at < {int(self.until)}")
        if self.min_points is not None:
            terms.append(f"points >= {int(self.min_points)}")
        if self.kind is not None:
            terms.append(f'kind == "{self.kind}"')
        if self.domain is not None:
            terms.append(f'domain == "{self.domain.removeprefix("www.")}"')
        return " and ".join(terms)


@dataclass
class StoryHit:
    """A story that matched, scored by its best chunk, with its best chunks in rank order."""

    story_id: int
    title: str
    url: str
    hn_url: str
    domain: str
    posted_at: int
    points: int
    comments: int
    score: float
    chunks: list[dict] = field(default_factory=list)  # chunk_index, text, score


@dataclass
class SearchResult:
    query: str
    mode: str  # the mode that ran: `hybrid` asked of a store without BM25 runs `dense`
    stories: list[StoryHit]
    notice: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def check_request(query: str, k: int, mode: str, chunks_per_story: int = 3) -> str:
    """The query stripped, or InvalidQuery naming the bad argument."""
    if mode not in MODES:
        raise InvalidQuery(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    if not 1 <= k <= MAX_K:
        raise InvalidQuery(f"k must be between 1 and {MAX_K} (got {k})")
    if not 1 <= chunks_per_story <= MAX_CHUNKS_PER_STORY:
        raise InvalidQuery(f"chunks per story must be between 1 and {MAX_CHUNKS_PER_STORY} (got {chunks_per_story})")
    query = " ".join(query.split())
    if not query:
        raise InvalidQuery("the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidQuery(f"the query is {len(query)} characters; at most {MAX_QUERY_CHARS}")
    return query


def search(store: ChunkStore, query: str, k: int = 5, mode: str = "hybrid", filters: Filters = Filters(),
           chunks_per_story: int = 3, embed_query: Callable[[str], np.ndarray] | None = None,
           ranker=None) -> SearchResult:
    """The `k` best stories for `query`. `embed_query` turns the query into its vector (default: the
    pipeline's model, through the warm embedding service when one runs)."""
    query = check_request(query, k, mode, chunks_per_story)
    expression = filters.expression()
    notice = ""
    if mode != "dense" and not store.schema.has_full_text():
        if mode == "text":
            raise FullTextUnavailable("this store has no full-text index: its Milvus server predates BM25 "
                                      "(Milvus 2.5); use mode=dense or hybrid")
        mode, notice = "dense", "this store has no full-text index (Milvus server before 2.5): dense results only"
    # Chunks, not stories, come back: ask for enough that k stories survive the grouping.
    candidates = min(16_384, max(50, k * chunks_per_story * 4))
    if mode == "text":
        hits = store.reader.text(query, candidates, expression)
    else:
        vector = (embed_query or _embed_query)(query)
        if mode == "dense":
            hits = store.reader.dense(vector, candidates, expression)
        else:
            hits = store.reader.hybrid(query, vector, candidates, expression, ranker)
    return SearchResult(query, mode, group_by_story(hits, k, chunks_per_story), notice)


def group_by_story(hits: list[dict], k: int, chunks_per_story: int) -> list[StoryHit]:
    """Chunk hits (best first) folded into the first `k` stories, each keeping its best chunks."""
    stories: dict[int, StoryHit] = {}
    for hit in hits:
        story = stories.get(hit["story_id"])
        if story is None:
            if len(stories) == k:
                continue
            story = stories[hit["story_id"]] = StoryHit(
                story_id=hit["story_id"], title=hit["title"], url=hit["url"],
                hn_url=f"https://news.ycombinator.com/item?id={hit['story_id']}", domain=hit.get("domain", ""),
                posted_at=hit.get("posted_at", 0), points=hit.get("points", 0), comments=hit.get("comments", 0),
                score=hit["score"])
        if len(story.chunks) < chunks_per_story:
            chunk = {"chunk_index": hit["chunk_index"], "text": hit["text"], "score": hit["score"],
                     "kind": hit.get("kind", "page")}
            if hit.get("comment_id"):  # a comment cites its own permalink and author
                chunk.update(comment_id=hit["comment_id"], author=hit.get("author", ""), url=hit["url"],
                             thread_path=hit.get("thread_path", ""), posted_at=hit.get("posted_at", 0))
            story.chunks.append(chunk)
    return list(stories.values())


def document(store: ChunkStore, story_id: int) -> dict | None:
    """A story's state and all its chunks in order (the whole document behind a hit); None if unknown."""
    state = store.ledger.states([story_id]).get(story_id)
    if state is None:
        return None
    chunks = store.reader.chunks_of(story_id)
    return {
        "story_id": story_id,
        "status": state["status"],
        "reason": state["reason"],
        "attempts": state["attempts"],
        "next_attempt_at": state["next_attempt_at"],
        "title": state["title"],
        "url": state["url"],
        "hn_url": f"https://news.ycombinator.com/item?id={story_id}",
        "updated_at": state["updated_at"],
        "chunks": [{"chunk_index": c["chunk_index"], "text": c["text"], "kind": c["kind"],
                    **({"comment_id": c["comment_id"], "author": c["author"], "thread_path": c["thread_path"]}
                       if c["comment_id"] else {})} for c in chunks],
    }


def _embed_query(query: str) -> np.ndarray:
    from include.config import EmbeddingConfig
    from include.embed.service import embed

    return embed([query], EmbeddingConfig())[0]
