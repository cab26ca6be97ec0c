"""A comment thread → comment chunks, and what a refresh of it must embed and delete.

Each comment becomes one or more chunks that stand on their own for a RAG app: the text starts with
who replied to whom and the opening words of the comment replied to, and the chunk carries the
comment's id, author, time and thread path. A refresh embeds only chunks whose content hash changed
(new or edited comments) and deletes the keys of comments gone since (deleted, killed, or now
shorter), a slice at a time for a huge thread.
"""

from __future__ import annotations

import hashlib

from include.config import ChunkConfig
from include.hn.threads import Thread, comment_url
from include.parse.chunking import TokenCounter, embedding_input, split_to_token_limit
from include.records import Chunk, ThreadOutcome, chunk_key

COMMENT_KIND = "comment"


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
                content_hash=content_hash(fingerprint, thread.title, text), thread_root=comment.root))
    return chunks


def content_hash(fingerprint: str, title: str, text: str) -> str:
    return hashlib.sha256(f"{fingerprint}\n{embedding_input(title, text)}".encode()).hexdigest()[:16]


def refresh(story_id: int, chunks: list[Chunk], stored: dict[int, str], read_at: int, slice_chunks: int,
            points: int = 0, steps_passed: int = 0, posted_at: int = 0) -> tuple[list[Chunk], ThreadOutcome]:
    """The chunks to embed now (new or changed, at most `slice_chunks`) and the thread's outcome.

    `stored`: chunk key → content hash of the thread's comment chunks in the store."""
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
