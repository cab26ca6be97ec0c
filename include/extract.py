"""The extract stage of a batch: item → page → elements → chunks, one outcome per story.

A story's own problems (page 404, not HTML, will not parse) become a failed `StoryOutcome` and never
stop the batch; an unreachable Hacker News API raises, so Airflow retries the task.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from include.chunking import TokenCounter, chunk_elements
from include.config import ChunkConfig, FetchConfig
from include.fetch import FetchError, PageFetcher
from include.hn_api import HackerNewsClient, story_from_item
from include.partition import partition_page, partition_text_post
from include.records import Chunk, Page, Story, StoryOutcome

log = logging.getLogger(__name__)


@dataclass
class ExtractedBatch:
    chunks: list[Chunk] = field(default_factory=list)
    outcomes: list[StoryOutcome] = field(default_factory=list)  # one per story of the batch
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage, for the run report


def extract_batch(
    story_ids: list[int],
    hn: HackerNewsClient,
    fetch_config: FetchConfig,
    chunk_config: ChunkConfig,
    counter: TokenCounter,
) -> ExtractedBatch:
    """Fetch items and pages concurrently (I/O), then partition and chunk them one by one (CPU)."""
    fetcher = PageFetcher(fetch_config)
    batch = ExtractedBatch()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=fetch_config.concurrency) as pool:
        # An API failure re-raises here and fails the task: nothing of the batch is written.
        stories = list(pool.map(lambda story_id: story_from_item(story_id, hn.get_item(story_id)), story_ids))
        pages = list(pool.map(lambda s: _fetch(s, fetcher) if isinstance(s, Story) else s, stories))
    batch.seconds = {"fetch": time.monotonic() - started, "partition": 0.0, "chunk": 0.0}
    for page in pages:
        if isinstance(page, StoryOutcome):
            outcome = page
        else:
            chunks, outcome = _chunk_page(page, chunk_config, counter, batch.seconds)
            batch.chunks.extend(chunks)
        batch.outcomes.append(outcome)
        log.info("%s", describe(outcome))
    return batch


def describe(outcome: StoryOutcome) -> str:
    """One line per story for the task log: id, title, and chunks or what went wrong."""
    title = repr(outcome.title[:80]) if outcome.title else "(no title)"
    if outcome.status == "ingested":
        return f"story {outcome.story_id} {title}: {outcome.chunk_count} chunks"
    return f"{outcome.status}: {outcome.reason} {title}"  # the reason starts with the story id and URL


def _fetch(story: Story, fetcher: PageFetcher) -> Page | StoryOutcome:
    if story.url is None:
        return Page(story, story.text_html or "", None)
    try:
        html, final_url = fetcher.fetch_html(story.url)
    except FetchError as exc:
        return _failed(story, "fetch", str(exc))
    return Page(story, html, final_url)


def _chunk_page(
    page: Page, chunk_config: ChunkConfig, counter: TokenCounter, seconds: dict[str, float]
) -> tuple[list[Chunk], StoryOutcome]:
    story = page.story
    started = time.monotonic()
    try:
        elements = partition_text_post(page.html) if page.final_url is None else partition_page(page.html)
    except Exception as exc:  # noqa: BLE001 - any parser error is this page's problem, not the batch's
        return [], _failed(story, "partition", f"{type(exc).__name__}: {exc}")
    finally:
        seconds["partition"] += time.monotonic() - started
    started = time.monotonic()
    chunks = chunk_elements(elements, story, story.url or story.hn_link, chunk_config, counter)
    seconds["chunk"] += time.monotonic() - started
    if not chunks:
        return [], _failed(story, "chunk", "no text found on the page")
    return chunks, StoryOutcome(story.id, "ingested", story.title, story.url or story.hn_link, chunk_count=len(chunks))


def _failed(story: Story, stage: str, cause: str) -> StoryOutcome:
    url = story.url or story.hn_link
    cause = " ".join(cause.split())[:500]
    return StoryOutcome(story.id, "failed", story.title, url, reason=f"story {story.id} <{url}>: {stage}: {cause}", stage=stage)
