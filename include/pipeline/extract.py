"""The extract stage of a batch: item → page → elements → chunks, one outcome per story.

A story's own problems (page 404, not HTML, will not parse, robots.txt says no) become a failed or
skipped `StoryOutcome` and never stop the batch; an unreachable Hacker News API raises, so Airflow
retries the task. Pages are fetched politely (include/crawl/polite_fetch.py).
"""

from __future__ import annotations

import html
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from include.config import ChunkConfig, FetchConfig, PolitenessConfig, ThreadConfig, pipeline_fingerprint
from include.crawl.polite_fetch import PoliteFetcher, Validators
from include.hn.client import HackerNewsClient, story_from_item
from include.hn.item_links import linked_item_id, resolve_linked_item
from include.hn.lifecycle import item_hash
from include.hn.threads import read_thread
from include.parse.chunking import TokenCounter, chunk_elements
from include.parse.comments import comment_chunks, refresh
from include.parse.partition import partition_page, partition_text_post
from include.records import Chunk, ExtractedBatch, Page, Story, StoryOutcome, problem_outcome

log = logging.getLogger(__name__)



def extract_batch(
    story_ids: list[int],
    hn: HackerNewsClient,
    fetch_config: FetchConfig,
    chunk_config: ChunkConfig,
    counter: TokenCounter,
    validators: dict[int, Validators] | None = None,
    politeness: PolitenessConfig | None = None,
) -> ExtractedBatch:
    """Fetch items and pages concurrently (I/O), then partition and chunk them one by one (CPU).

    `validators`: ETag/Last-Modified of stories stored before, for a conditional refetch."""
    fingerprint = pipeline_fingerprint(counter.model_name, chunk_config)
    fetcher = PoliteFetcher(fetch_config, politeness or PolitenessConfig(), fingerprint)
    batch = ExtractedBatch()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=fetch_config.concurrency) as pool:
        # An API failure re-raises here and fails the task: nothing of the batch is written.
        items = list(pool.map(lambda story_id: _story(story_id, hn), story_ids))
    batch.linked = {s.id: s.linked_item for s in items if isinstance(s, Story) and s.linked_item}
    fetched = fetcher.fetch_all([s for s in items if isinstance(s, Story)], validators or {})
    batch.seconds = {"fetch": time.monotonic() - started, "partition": 0.0, "chunk": 0.0}
    for item in items:
        page = fetched[item.id] if isinstance(item, Story) else item
        if isinstance(page, StoryOutcome):
            outcome = page
        else:
            chunks, outcome = _chunk_page(page, chunk_config, counter, batch.seconds)
            outcome = replace(outcome, etag=page.etag, last_modified=page.last_modified, fingerprint=fingerprint)
            batch.chunks.extend(chunks)
        if isinstance(item, Story):
            outcome = replace(outcome, posted_at=item.time, points=item.score, comments=item.descendants,
                              item_hash=item_hash(item))
        batch.outcomes.append(outcome)
        log.info("%s", describe(outcome))
    return batch


def extract_threads(
    batch: ExtractedBatch,
    story_ids: list[int],
    stored: dict[int, dict[int, str]],
    hn: HackerNewsClient,
    config: ThreadConfig,
    chunk_config: ChunkConfig,
    counter: TokenCounter,
) -> None:
    """Read the threads of `story_ids` and add their new or changed comment chunks to `batch`.

    `stored`: per story, the content hash of each comment chunk in the store (empty for a new story).
    A story this batch skipped or failed has no thread worth reading (dead, deleted, not a story)."""
    fingerprint = pipeline_fingerprint(counter.model_name, chunk_config)
    not_ingested = {o.story_id for o in batch.outcomes if o.status != "ingested"}
    wanted = [i for i in story_ids if i not in not_ingested]
    # A story of this batch: its title and linked item are known; a thread refresh reads its item again.
    known = {o.story_id: (o.title, batch.linked.get(o.story_id)) for o in batch.outcomes}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        threads = list(pool.map(lambda i: _read(hn, i, known.get(i) or _thread_source(hn, i), config), wanted))
    for thread in threads:
        chunks = comment_chunks(thread, counter, chunk_config, fingerprint)
        read_at = int(time.time())
        todo, outcome = refresh(thread.story_id, chunks, stored.get(thread.story_id, {}), read_at, config.slice_chunks,
                                thread.points, config.steps_passed(thread.posted_at, read_at), thread.posted_at)
        batch.chunks.extend(todo)
        batch.threads.append(outcome)
        log.info("story %d thread: %d comments, %d comment chunks, %d to embed, %d gone%s", thread.story_id,
                 len(thread.comments), len(chunks), len(todo), len(outcome.stale_ids),
                 "" if outcome.complete else " (the rest in a later run)")
    batch.seconds["threads"] = time.monotonic() - started


def _read(hn: HackerNewsClient, story_id: int, source: tuple[str, int | None], config: ThreadConfig):
    title, linked_item = source
    return read_thread(hn, story_id, title, config, linked_item)


def _story(story_id: int, hn: HackerNewsClient) -> Story | StoryOutcome:
    """The story as the API has it; one that links to an HN item is read as that item."""
    story = story_from_item(story_id, hn.get_item(story_id))
    return resolve_linked_item(story, hn) if isinstance(story, Story) else story


def _thread_source(hn: HackerNewsClient, story_id: int) -> tuple[str, int | None]:
    """A refreshed thread's story title (it prefixes its comment chunks like a page's) and the HN item
    its URL links to, whose thread is read with it."""
    item = hn.get_item(story_id) or {}
    return html.unescape(str(item.get("title") or "")).strip(), linked_item_id(item.get("url"))


def describe(outcome: StoryOutcome) -> str:
    """One line per story for the task log: id, title, and chunks or what went wrong."""
    title = repr(outcome.title[:80]) if outcome.title else "(no title)"
    if outcome.unchanged:
        return f"story {outcome.story_id} {title}: not modified (HTTP 304), its chunks kept"
    if outcome.status == "ingested":
        return f"story {outcome.story_id} {title}: {outcome.chunk_count} chunks"
    return f"{outcome.status}: {outcome.reason} {title}"  # the reason starts with the story id and URL


def _chunk_page(
    page: Page, chunk_config: ChunkConfig, counter: TokenCounter, seconds: dict[str, float]
) -> tuple[list[Chunk], StoryOutcome]:
    story = page.story
    started = time.monotonic()
    try:
        elements = partition_text_post(page.html) if page.final_url is None else partition_page(page.html)
    except Exception as exc:  # noqa: BLE001 - any parser error is this page's problem, not the batch's
        return [], problem_outcome(story, "failed", "partition", f"{type(exc).__name__}: {exc}")
    finally:
        seconds["partition"] += time.monotonic() - started
    started = time.monotonic()
    try:
        chunks = chunk_elements(elements, story, story.source_url, chunk_config, counter)
    except Exception as exc:  # noqa: BLE001 - as for the parser: this page's problem, never the batch's
        log.exception("story %s: chunking failed", story.id)
        return [], problem_outcome(story, "failed", "chunk", f"{type(exc).__name__}: {exc}")
    finally:
        seconds["chunk"] += time.monotonic() - started
    if not chunks:
        return [], problem_outcome(story, "failed", "chunk", "no text found on the page")
    return chunks, StoryOutcome(story.id, "ingested", story.title, story.source_url, chunk_count=len(chunks))
