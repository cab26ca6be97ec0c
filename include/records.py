"""Small typed records passed between stages. Each record's fields say what is known at that point."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Literal

# Chunk primary keys: `item_id * CHUNK_ID_STRIDE + chunk_index`, the story's id for a page chunk and the
# comment's for a comment chunk (HN ids are one sequence: keys never collide), so writing a story or a
# comment again replaces its rows instead of adding new ones. chunk_index < stride
# (ChunkConfig.max_chunks_per_story keeps it so).
CHUNK_ID_STRIDE = 100_000
# Keys of linked-thread comments live in [2^62, 2^63): item-based keys stay below 2^62 (ids < 4.6e13).
LINKED_KEY_BASE = 2**62

# A story ends each run in one of these states (stored in the `hn_stories` collection); "removed": it
# was ingested, then killed or deleted on HN, and its rows are gone.
Status = Literal["ingested", "skipped", "failed", "removed"]


@dataclass(frozen=True)
class Story:
    """A Hacker News story worth ingesting: it has a title and either a URL or its own text."""

    id: int
    title: str
    url: str | None
    text_html: str | None  # the HTML of a text post (Ask HN and the like)
    time: int  # creation time, Unix seconds
    by: str | None = None
    score: int = 0  # points when it was read: what a RAG app ranks or filters by
    descendants: int = 0  # comment count when it was read
    linked_item: int | None = None  # the HN item its URL points to (include.hn.item_links): read through the API

    @property
    def is_text_post(self) -> bool:
        """Its text is its content (Ask HN, or the text of the HN item it links to): no page to fetch."""
        return self.url is None or (self.linked_item is not None and self.text_html is not None)

    @property
    def source_url(self) -> str:
        """The page a chunk links to: the story's URL, or its HN thread for a text post."""
        return self.url or self.hn_link

    @property
    def hn_link(self) -> str:
        return f"https://news.ycombinator.com/item?id={self.id}"


@dataclass(frozen=True)
class Page:
    """A fetched document, decoded to text, ready to partition."""

    story: Story
    html: str
    final_url: str | None  # None for a text post
    etag: str = ""  # validators the site sent, kept for a conditional refetch
    last_modified: str = ""


@dataclass(frozen=True)
class Chunk:
    """One piece of a story's text, short enough for the embedding model's window, with the story's
    metadata a search filters by (stored on every chunk: Milvus filters cannot join collections)."""

    story_id: int
    chunk_index: int
    title: str
    url: str
    text: str
    posted_at: int = 0  # the story's creation time, Unix seconds; 0: unknown (a chunk from schema v1)
    points: int = 0
    comments: int = 0
    kind: str = "page"  # "page": the story's page or its own text; "comment": one comment of its thread
    # A comment chunk's own fields (empty on a page chunk); `posted_at` is then the comment's time.
    comment_id: int = 0
    author: str = ""
    thread_path: str = ""  # comment ids from the top-level comment down to this one, "/"-joined
    content_hash: str = ""  # of what is embedded, under the pipeline fingerprint: unchanged means no re-embed
    # A comment of another item's thread (the HN item a story links to): keyed apart from that item's own rows.
    thread_root: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StoryOutcome:
    """What a run did with one story: the record a user reads when asking "where is story N?"."""

    story_id: int
    status: Status
    title: str = ""
    url: str = ""
    reason: str = ""  # one line naming the story, the URL and the cause
    chunk_count: int = 0
    stage: str = ""  # the stage that skipped or failed it: item, robots, fetch, partition, chunk
    # What the page fetch learnt, for the next fetch of the same story.
    etag: str = ""
    last_modified: str = ""
    fingerprint: str = ""  # config.pipeline_fingerprint of the run that made the chunks
    unchanged: bool = False  # the site answered 304: the stored chunks are still right, none are written
    retry_after: float | None = None  # seconds the site asked us to wait (429/503 Retry-After)
    attempted: bool = True  # False: deferred without a request (its host asked to slow down)
    # The story's metadata when it was read (what a RAG app ranks by); 0 when the item was not read.
    posted_at: int = 0
    points: int = 0
    comments: int = 0
    item_hash: str = ""  # of the title, URL and text it was ingested from (lifecycle.item_hash)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ThreadOutcome:
    """What a run did with one story's comment thread."""

    story_id: int
    read_at: int  # Unix seconds when the thread was read
    complete: bool  # every new or changed comment chunk is in this batch (False: the rest in a later run)
    comment_chunks: int  # the thread's comment chunks once this batch is written
    embedded: int  # comment chunks of this batch (new or changed)
    stale_ids: list[int]  # chunk keys of comments since deleted, killed or shortened
    points: int = 0
    comments: int = 0
    steps_passed: int = 0  # ThreadConfig.refresh_after steps passed when it was read
    posted_at: int = 0  # the story's creation time, as the thread says

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExtractedBatch:
    """What the extract stage made of a batch: its chunks (pages and new or changed comments), one
    outcome per story, one per comment thread read, and the wall time of each stage."""

    chunks: list[Chunk] = field(default_factory=list)
    outcomes: list[StoryOutcome] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    threads: list[ThreadOutcome] = field(default_factory=list)
    linked: dict[int, int] = field(default_factory=dict)  # story id -> HN item it links to (not staged)


def problem_outcome(story: Story, status: Status, stage: str, cause: str, **extra) -> StoryOutcome:
    """A skipped or failed story, its reason one line naming the story, the URL and the cause."""
    url = story.source_url
    cause = " ".join(cause.split())[:500]
    return StoryOutcome(story.id, status, story.title, url, reason=f"story {story.id} <{url}>: {stage}: {cause}",
                        stage=stage, **extra)


def chunk_id(item_id: int, chunk_index: int) -> int:
    return item_id * CHUNK_ID_STRIDE + chunk_index


def chunk_key(chunk: Chunk) -> int:
    """A page chunk is keyed by its story, a comment chunk by its comment. A comment of a linked item's
    thread is keyed by story and comment (a hash above every item-based key): the linked item may be in
    the store as a story of its own, or linked from another story, each with rows of their own."""
    if chunk.thread_root and chunk.thread_root != chunk.story_id:
        digest = hashlib.blake2b(f"{chunk.story_id}:{chunk.comment_id}:{chunk.chunk_index}".encode(), digest_size=8)
        return LINKED_KEY_BASE + int.from_bytes(digest.digest(), "big") % LINKED_KEY_BASE
    return chunk_id(chunk.comment_id or chunk.story_id, chunk.chunk_index)
