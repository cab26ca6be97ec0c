"""A story's comment thread as HN has it now: comments with their authors, times and thread paths.

The thread comes from Algolia's items endpoint (the whole tree in one request), or, when that fails,
from walking the Firebase items' `kids`. Dead and deleted comments are left out (their replies stay).
Each comment knows the author and opening words of the comment it replies to, so that its chunks
(`include.parse.comments`) stand on their own.
"""

from __future__ import annotations

import html
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from include.config import ThreadConfig
from include.hn.client import HackerNewsClient, HackerNewsUnavailable

log = logging.getLogger(__name__)

_CONTEXT_WORDS = 20
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Comment:
    id: int
    parent_id: int
    author: str
    time: int
    text: str  # plain text, paragraphs separated by blank lines
    path: tuple[int, ...]  # comment ids from the top-level comment down to this one
    replying_to: str = ""  # the parent comment's author and opening words; empty for a top-level comment
    root: int = 0  # the item whose thread it is in, when not the story's own (the HN item the story links to)


@dataclass(frozen=True)
class Thread:
    story_id: int
    title: str
    points: int
    comments: list[Comment]
    posted_at: int = 0  # the story's creation time


def comment_text(text_html: str) -> str:
    """HN's comment HTML (`<p>` between paragraphs, links, `<i>`, `<pre>`) as plain text."""
    text = re.sub(r"<p>", "\n\n", text_html, flags=re.IGNORECASE)
    text = html.unescape(_TAG.sub("", text))
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n") if p.strip())


def read_thread(hn: HackerNewsClient, story_id: int, title: str, config: ThreadConfig,
                linked_item: int | None = None) -> Thread:
    """The story's live comments in thread order (depth first), then those of the HN item its URL links
    to (`include.hn.item_links`): a story that points at a discussion carries that discussion."""
    tree = _tree(hn, story_id, config)
    comments: list[Comment] = []
    _flatten(tree.get("children") or [], story_id, (), None, comments)
    if linked_item:
        _flatten(_tree(hn, linked_item, config).get("children") or [], linked_item, (), None, comments, linked_item)
    return Thread(story_id, title, _count(tree.get("points")), comments, _count(tree.get("created_at_i")))


def _tree(hn: HackerNewsClient, item_id: int, config: ThreadConfig) -> dict:
    try:
        return hn.thread(item_id)
    except HackerNewsUnavailable as exc:
        log.info("item %d: comment tree not available in one request (%s); walking its items", item_id, exc)
        return _tree_from_items(hn, item_id, config.max_comments)


def _flatten(children: list[dict], parent_id: int, path: tuple[int, ...], parent: Comment | None,
             into: list[Comment], root: int = 0) -> None:
    for child in children:
        comment_id = int(child["id"])
        live = child.get("author") and child.get("text") and not child.get("dead") and not child.get("deleted")
        comment = None
        if live:
            comment = Comment(comment_id, parent_id, str(child["author"]), _count(child.get("created_at_i")),
                              comment_text(str(child["text"])), (*path, comment_id), _opening(parent, path), root)
            if comment.text:
                into.append(comment)
        # Replies to a deleted comment are still part of the thread; they quote nothing.
        _flatten(child.get("children") or [], comment_id, (*path, comment_id), comment, into, root)


def _opening(parent: Comment | None, path: tuple[int, ...]) -> str:
    if parent is None:
        return "a deleted comment" if path else ""
    words = parent.text.split()
    quote = " ".join(words[:_CONTEXT_WORDS]) + (" …" if len(words) > _CONTEXT_WORDS else "")
    return f'{parent.author}: "{quote}"'


def _tree_from_items(hn: HackerNewsClient, story_id: int, max_comments: int) -> dict:
    """The same tree shape as Algolia's, from the Firebase items (one request per comment)."""
    story = hn.get_item(story_id) or {}
    root = {"id": story_id, "points": story.get("score"), "created_at_i": story.get("time"), "children": []}
    level = [(root, int(kid)) for kid in story.get("kids") or []]
    seen = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        while level and seen < max_comments:
            level = level[: max_comments - seen]
            items = list(pool.map(lambda pair: hn.get_item(pair[1]), level))
            seen += len(level)
            next_level = []
            for (parent, _), item in zip(level, items, strict=True):
                if not item:
                    continue
                node = {"id": item["id"], "author": item.get("by"), "text": item.get("text"),
                        "created_at_i": item.get("time"), "dead": item.get("dead"), "deleted": item.get("deleted"),
                        "children": []}
                parent["children"].append(node)
                next_level.extend((node, int(kid)) for kid in item.get("kids") or [])
            level = next_level
    return root


def comment_url(comment_id: int) -> str:
    return f"https://news.ycombinator.com/item?id={comment_id}"


def _count(value) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
