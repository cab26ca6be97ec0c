"""Comment threads: flattening, the text a comment chunk embeds, what a refresh embeds and deletes, when
a thread is due, and how batches carry threads."""

from __future__ import annotations

import pytest

from include.config import ChunkConfig, ThreadConfig
from include.hn.threads import Thread, _flatten, comment_text
from include.parse.chunking import TokenCounter
from include.parse.comments import comment_chunks, refresh
from include.pipeline.planning import plan_batches

HOUR = 3600


@pytest.fixture(scope="module")
def counter():
    return TokenCounter("all-MiniLM-L6-v2")


def node(id_, author, text, *children, time=1_000):
    return {"id": id_, "author": author, "text": text, "created_at_i": time, "children": list(children)}


def flatten(children):
    out = []
    _flatten(children, 1, (), None, out)
    return out


def test_comment_html_becomes_paragraphs_of_plain_text():
    assert comment_text("First &amp; <i>one</i><p>Second <a href=\"x\">link</a>") == "First & one\n\nSecond link"


def test_a_reply_quotes_its_parent_and_knows_its_path():
    comments = flatten([node(10, "ann", "Parent words here", node(11, "bob", "A reply"))])
    assert [c.id for c in comments] == [10, 11]
    assert comments[0].replying_to == "" and comments[0].path == (10,)
    assert comments[1].replying_to == 'ann: "Parent words here"' and comments[1].path == (10, 11)
    assert comments[1].parent_id == 10


def test_dead_and_deleted_comments_are_left_out_but_their_replies_stay():
    deleted = {"id": 20, "author": None, "text": None, "children": [node(21, "cy", "Still here")]}
    dead = {**node(30, "dan", "flagged", node(31, "eve", "reply to dead")), "dead": True}
    comments = flatten([deleted, dead])
    assert [c.id for c in comments] == [21, 31]
    assert comments[0].replying_to == "a deleted comment" and comments[0].path == (20, 21)


def test_every_comment_chunk_fits_the_window_and_carries_its_comment(counter):
    long_text = " ".join(f"word{i}" for i in range(900))
    thread = Thread(1, "A story title", 42, flatten([node(10, "ann", long_text, node(11, "bob", "Short reply"))]))
    chunks = comment_chunks(thread, counter, ChunkConfig(), "fp")
    from include.parse.chunking import embedding_input
    assert all(counter.count(embedding_input(c.title, c.text)) <= ChunkConfig().max_tokens for c in chunks)
    ann = [c for c in chunks if c.comment_id == 10]
    assert len(ann) > 2 and [c.chunk_index for c in ann] == list(range(len(ann)))
    assert all(c.text.startswith("Comment by ann on the story") for c in ann)
    reply = [c for c in chunks if c.comment_id == 11]
    assert reply[0].text.startswith('Comment by bob, replying to ann: "word0 word1') and reply[0].thread_path == "10/11"
    assert {c.kind for c in chunks} == {"comment"} and {c.points for c in chunks} == {42}
    assert reply[0].url == "https://news.ycombinator.com/item?id=11" and reply[0].author == "bob"


def test_a_refresh_embeds_only_new_or_changed_chunks_and_deletes_gone_ones(counter):
    from include.records import chunk_key

    before = comment_chunks(Thread(1, "T", 0, flatten([node(10, "a", "one"), node(12, "b", "two")])),
                            counter, ChunkConfig(), "fp")
    stored = {chunk_key(c): c.content_hash for c in before}
    after = comment_chunks(Thread(1, "T", 0, flatten([node(10, "a", "one"), node(13, "c", "new")])),
                           counter, ChunkConfig(), "fp")
    todo, outcome = refresh(1, after, stored, 100, slice_chunks=10)
    assert [c.comment_id for c in todo] == [13] and outcome.embedded == 1
    assert outcome.stale_ids == [chunk_key(before[1])] and outcome.complete and outcome.comment_chunks == 2
    # Another model or chunking (fingerprint) re-embeds everything.
    again = comment_chunks(Thread(1, "T", 0, flatten([node(10, "a", "one")])), counter, ChunkConfig(), "fp2")
    assert len(refresh(1, again, stored, 100, 10)[0]) == 1


def test_a_huge_thread_goes_in_slices_and_stays_due(counter):
    chunks = comment_chunks(Thread(1, "T", 0, flatten([node(100 + i, "a", f"comment {i}") for i in range(25)])),
                            counter, ChunkConfig(), "fp")
    todo, outcome = refresh(1, chunks, {}, 100, slice_chunks=10)
    assert len(todo) == 10 and not outcome.complete and outcome.comment_chunks == 10
    from include.records import chunk_key
    stored = {chunk_key(c): c.content_hash for c in todo}
    todo2, outcome2 = refresh(1, chunks, stored, 100, slice_chunks=10)
    assert not {c.comment_id for c in todo} & {c.comment_id for c in todo2} and outcome2.comment_chunks == 20


def test_refresh_steps_passed_decay_with_the_story_age():
    config = ThreadConfig(refresh_after=(HOUR, 6 * HOUR, 24 * HOUR))
    assert config.steps_passed(0, 10) == 0
    assert config.steps_passed(0, 2 * HOUR) == 1
    assert config.steps_passed(0, 7 * 24 * HOUR) == 3


def test_thread_refreshes_get_batches_of_their_own_after_the_pages():
    batches = plan_batches([5, 4, 3], 2, threads=True, refresh_ids=[9, 4, 8])
    assert [b["story_ids"] for b in batches] == [[5, 4], [3], []]
    assert [b["thread_ids"] for b in batches] == [[5, 4], [3], [9, 8]]
    assert batches[2]["label"] == "batch 2: 2 threads 8-9"
    assert all(b["thread_ids"] == [] for b in plan_batches([1, 2], 5))
