"""Follow stories after ingestion: an edited story is ingested again in place, a killed or deleted one
loses its rows (page and comments) and its state says why and when. Only `deleted: true` or `dead: true`
removes a story: a null item is checked again later.

Candidates are the stories `/v0/updates.json` lists as changed, plus recent stories whose thread is due
(they are re-read anyway); each is compared with what the store holds (`item_hash`: title, URL, text).
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from include.hn.client import HackerNewsClient, story_from_item
from include.records import Story

log = logging.getLogger(__name__)


def item_hash(story: Story) -> str:
    """What, if edited, changes a story's chunks: its title (in every chunk), URL and own text."""
    return hashlib.sha256(f"{story.title}\n{story.url}\n{story.text_html}".encode()).hexdigest()[:16]


@dataclass
class LifecycleChanges:
    reingest: list[int] = field(default_factory=list)  # edited, or alive again after a removal
    removed: dict[int, str] = field(default_factory=dict)  # story id → why, for its state


def check_stories(hn: HackerNewsClient, states: dict[int, dict], now: float) -> LifecycleChanges:
    """Compare each stored story in `states` with its item on HN now."""
    ids = sorted(states)
    with ThreadPoolExecutor(max_workers=8) as pool:
        items = list(pool.map(hn.get_item, ids))
    changes = LifecycleChanges()
    when = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    for story_id, item in zip(ids, items, strict=True):
        state = states[story_id]
        if item is None:  # not a deletion (HN answers null for a moment, or before an item propagates)
            continue
        gone = "deleted" if item.get("deleted") else "dead (killed or flagged)" if item.get("dead") else ""
        if gone:
            if state["status"] != "removed":
                changes.removed[story_id] = f"story {story_id}: {gone} on Hacker News, found {when}; its rows were removed"
            continue
        story = story_from_item(story_id, item)
        if not isinstance(story, Story):
            continue
        if state["status"] == "removed" or (state["status"] == "ingested" and state["item_hash"]
                                            and item_hash(story) != state["item_hash"]):
            changes.reingest.append(story_id)
    if changes.removed or changes.reingest:
        log.info("lifecycle: %d stories checked, %d to ingest again (edited or back), %d removed", len(ids),
                 len(changes.reingest), len(changes.removed))
    return changes
