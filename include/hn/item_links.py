"""Stories whose URL is a Hacker News item (`news.ycombinator.com/item?id=N`): read through the API.

The page of such a story is HN's own discussion page, whose HTML is a comment tree that the page
extractor would cut down to its opening post. So the story is ingested as the item it links to: that
item's text as the story's text, and that item's comment thread along with the story's own (see
`include.hn.threads`). A linked item that is itself a link to a page lends the story its URL instead.
"""

from __future__ import annotations

import html
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

from include.hn.client import HackerNewsClient
from include.records import Story, StoryOutcome, problem_outcome

HN_HOSTS = ("news.ycombinator.com", "ycombinator.com", "www.ycombinator.com")
_MAX_HOPS = 3  # a link to a link to a link: enough for reposts, bounded for a loop


def linked_item_id(url: str | None) -> int | None:
    """The item id of a Hacker News item URL, or None for any other URL."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or (parts.hostname or "").lower() not in HN_HOSTS:
        return None
    if parts.path.rstrip("/") != "/item":
        return None
    ids = parse_qs(parts.query).get("id", [])
    return int(ids[0]) if ids and ids[0].isdigit() and int(ids[0]) > 0 else None


def resolve_linked_item(story: Story, hn: HackerNewsClient) -> Story | StoryOutcome:
    """`story` as the item its URL points to: its text (a text post) or its page's URL; the story keeps
    its own id, title and HN numbers, and `linked_item` names the item whose thread it also reads.

    A linked item that is null fails the story for a later try; deleted or dead, it is skipped."""
    linked = linked_item_id(story.url)
    hops = 0
    while linked is not None and linked != story.id:
        item = hn.get_item(linked)  # an unreachable API raises: the task is retried
        what = f"links to Hacker News item {linked}"
        if item is None:
            return problem_outcome(story, "failed", "item", f"{what}, which is not available yet (null)")
        if item.get("deleted") or item.get("dead"):
            return problem_outcome(story, "skipped", "item", f"{what}, which is {'deleted' if item.get('deleted') else 'dead'}")
        url, text = (item.get("url") or "").strip(), (item.get("text") or "").strip()
        hops += 1
        if url and not text and hops < _MAX_HOPS and linked_item_id(url) is not None:
            linked = linked_item_id(url)
            continue
        if text:
            title = html.unescape(str(item.get("title") or "")).strip()
            heading = f"<p>{html.escape(title)}</p>" if title and title != story.title else ""
            return replace(story, text_html=heading + text, linked_item=linked)
        if url.lower().startswith(("http://", "https://")) and linked_item_id(url) is None:
            return replace(story, url=url, linked_item=linked)
        return problem_outcome(story, "skipped", "item", f"{what}, which has no text and no page")
    return story
