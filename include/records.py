"""Small typed records passed between stages. Each record's fields say what is known at that point."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

# A story ends each run in one of these states (stored in the `hn_stories` collection).
Status = Literal["ingested", "skipped", "failed"]


@dataclass(frozen=True)
class Story:
    """A Hacker News story worth ingesting: it has a title and either a URL or its own text."""

    id: int
    title: str
    url: str | None
    text_html: str | None  # the HTML of a text post (Ask HN and the like)
    time: int  # creation time, Unix seconds
    by: str | None = None

    @property
    def hn_link(self) -> str:
        return f"https://news.ycombinator.com/item?id={self.id}"


@dataclass(frozen=True)
class Page:
    """A fetched document, decoded to text, ready to partition."""

    story: Story
    html: str
    final_url: str | None  # None for a text post


@dataclass(frozen=True)
class Chunk:
    """One piece of a story's text, short enough for the embedding model's window."""

    story_id: int
    chunk_index: int
    title: str
    url: str
    text: str

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
    stage: str = ""  # the stage that skipped or failed it: item, fetch, partition, chunk

    def to_dict(self) -> dict:
        return asdict(self)
