"""A story's comment thread → comment chunks, and what a refresh of it must embed and delete.

The thread comes from Algolia's items endpoint (the whole tree in one request), or, when that fails,
from walking the Firebase items' `kids`. Dead and deleted comments are left out (their replies stay).
Each comment becomes one or more chunks that stand on their own for a RAG app: the text starts with
who replied to whom and the opening words of the comment replied to, and the chunk carries the
comment's id, author, time and thread path.

A refresh embeds only chunks whose content hash changed (new or edited comments) and deletes the keys
of comments gone since (deleted, killed, or now shorter), a slice at a time for a huge thread.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from include.chunking import TokenCounter, embedding_input, split_to_token_limit
from include.config import ChunkConfig, ThreadConfig
from include.hn_api import HackerNewsClient, HackerNewsUnavailable
from include.records import Chunk, ThreadOutcome

log = logging.getLogger(__name__)

COMMENT_KIND = "comment"
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


def read_thread(hn: HackerNewsClient, story_id: int, title: str, config: ThreadConfig) -> Thread:
    """The story's live comments in thread order (depth first)."""
    try:
        tree = hn.thread(story_id)
    except HackerNewsUnavailable as exc:
        log.info("story %d: comment tree not available in one request (%s); walking its items", story_id, exc)
        tree = _tree_from_items(hn, story_id, config.max_comments)
    comments: list[Comment] = []
    _flatten(tree.get("children") or [], story_id, (), None, comments)
    return Thread(story_id, title, _count(tree.get("points")), comments, _count(tree.get("created_at_i")))


def _flatten(children: list[dict], parent_id: int, path: tuple[int, ...], parent: Comment | None,
             into: list[Comment]) -> None:
    for child in children:
        comment_id = int(child["id"])
        live = child.get("author") and child.get("text") and not child.get("dead") and not child.get("deleted")
        comment = None
        if live:
            comment = Comment(comment_id, parent_id, str(child["author"]), _count(child.get("created_at_i")),
                              comment_text(str(child["text"])), (*path, comment_id), _opening(parent, path))
            if comment.text:
                into.append(comment)
        # Replies to a deleted comment are still part of the thread; they quote nothing.
        _flatten(child.get("children") or [], comment_id, (*path, comment_id), comment, into)


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


def comment_chunks(thread: Thread, counter: TokenCounter, chunk_config: ChunkConfig, fingerprint: str) -> list[Chunk]:
    """Every comment's chunks, each within the model window with the story title and the reply context."""
    chunks = []
    for comment in thread.comments:
        header = f"Comment by {comment.author}" + (f", replying to {comment.replying_to}" if comment.replying_to
                                                   else " on the story")
        budget = chunk_config.max_tokens - counter.count(embedding_input(thread.title, header + "\n\n"))
        pieces = split_to_token_limit(comment.text, max(budget, 16), counter)
        for part, piece in enumerate(pieces[:100]):
            text = f"{header}\n\n{piece}"
            chunks.append(Chunk(
                thread.story_id, part, thread.title, comment_url(comment.id), text, posted_at=comment.time,
                points=thread.points, comments=len(thread.comments), kind=COMMENT_KIND, comment_id=comment.id,
                author=comment.author, thread_path="/".join(str(i) for i in comment.path),
                content_hash=content_hash(fingerprint, thread.title, text)))
    return chunks


def comment_url(comment_id: int) -> str:
    return f"https://news.ycombinator.com/item?id={comment_id}"


def content_hash(fingerprint: str, title: str, text: str) -> str:
    return hashlib.sha256(f"{fingerprint}\n{embedding_input(title, text)}".encode()).hexdigest()[:16]


def refresh(story_id: int, chunks: list[Chunk], stored: dict[int, str], read_at: int, slice_chunks: int,
            points: int = 0, steps_passed: int = 0, posted_at: int = 0) -> tuple[list[Chunk], ThreadOutcome]:
    """The chunks to embed now (new or changed, at most `slice_chunks`) and the thread's outcome.

    `stored`: chunk key → content hash of the thread's comment chunks in the store."""
    from include.milvus_store import chunk_key

    current = {chunk_key(c): c for c in chunks}
    changed = [c for key, c in current.items() if stored.get(key) != c.content_hash]
    now_embedded = changed[:slice_chunks]
    stale = sorted(set(stored) - set(current))
    kept_before = sum(1 for key in current if key in stored)
    outcome = ThreadOutcome(story_id, read_at, complete=len(changed) <= slice_chunks,
                            comment_chunks=kept_before + sum(1 for c in now_embedded if chunk_key(c) not in stored),
                            embedded=len(now_embedded), stale_ids=stale, points=points,
                            comments=max((c.comments for c in chunks), default=0), steps_passed=steps_passed,
                            posted_at=posted_at)
    return now_embedded, outcome


def _count(value) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
