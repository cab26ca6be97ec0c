"""Stories whose URL is a Hacker News item: read as that item through the replay's API."""

from __future__ import annotations

import pytest

from include.hn.client import HackerNewsClient
from include.hn.item_links import linked_item_id, resolve_linked_item
from include.records import Chunk, Story, StoryOutcome, chunk_key


@pytest.mark.parametrize(("url", "expected"), [
    ("https://news.ycombinator.com/item?id=123", 123),
    ("http://news.ycombinator.com/item?id=123&p=2", 123),
    ("https://NEWS.ycombinator.com/item/?id=7", 7),
    ("https://news.ycombinator.com/item?id=abc", None),
    ("https://news.ycombinator.com/user?id=pg", None),
    ("https://news.ycombinator.com.evil.example/item?id=1", None),
    ("https://example.com/item?id=1", None),
    ("ftp://news.ycombinator.com/item?id=1", None),
    (None, None),
])
def test_only_hn_item_pages_are_linked_items(url, expected):
    assert linked_item_id(url) == expected


def story(url: str) -> Story:
    return Story(id=900, title="A repost", url=url, text_html=None, time=1_700_000_000)


@pytest.fixture
def hn(tmp_path):
    from tests.replay_server import ReplayServer

    replay = ReplayServer()
    replay.add_item({"id": 10, "type": "story", "title": "Ask HN: Original", "text": "<p>The question</p>", "time": 1})
    replay.add_item({"id": 11, "type": "story", "title": "A page", "url": "https://example.org/a", "time": 1})
    replay.add_item({"id": 12, "type": "story", "title": "Link to a link",
                     "url": "https://news.ycombinator.com/item?id=11", "time": 1})
    replay.add_item({"id": 13, "type": "comment", "by": "x", "text": "A comment worth a story", "time": 1})
    replay.add_item({"id": 14, "type": "story", "deleted": True, "time": 1})
    replay.add_item({"id": 15, "type": "story", "title": "Title only", "time": 1})
    with replay:
        yield HackerNewsClient(base_url=replay.api_url, algolia_url=replay.algolia_url)


def test_a_linked_text_item_becomes_the_story_text_with_its_title(hn):
    resolved = resolve_linked_item(story("https://news.ycombinator.com/item?id=10"), hn)
    assert resolved.is_text_post and resolved.linked_item == 10 and resolved.id == 900
    assert resolved.text_html == "<p>Ask HN: Original</p><p>The question</p>"
    assert resolved.source_url == "https://news.ycombinator.com/item?id=10"  # chunks link to the discussion
    comment = resolve_linked_item(story("https://news.ycombinator.com/item?id=13"), hn)
    assert comment.text_html == "A comment worth a story" and comment.linked_item == 13


def test_a_linked_page_lends_its_url_and_links_are_followed(hn):
    for url in ("https://news.ycombinator.com/item?id=11", "https://news.ycombinator.com/item?id=12"):
        resolved = resolve_linked_item(story(url), hn)
        assert resolved.url == "https://example.org/a" and not resolved.is_text_post
    assert resolve_linked_item(story("https://news.ycombinator.com/item?id=12"), hn).linked_item == 11


def test_a_missing_or_empty_linked_item_is_a_clear_outcome(hn):
    missing = resolve_linked_item(story("https://news.ycombinator.com/item?id=99"), hn)
    assert isinstance(missing, StoryOutcome) and missing.status == "failed" and "not available yet" in missing.reason
    deleted = resolve_linked_item(story("https://news.ycombinator.com/item?id=14"), hn)
    assert deleted.status == "skipped" and "item 14, which is deleted" in deleted.reason
    empty = resolve_linked_item(story("https://news.ycombinator.com/item?id=15"), hn)
    assert empty.status == "skipped" and "no text and no page" in empty.reason
    itself = Story(id=10, title="Self", url="https://news.ycombinator.com/item?id=10", text_html=None, time=1)
    assert resolve_linked_item(itself, hn) is itself


def test_a_linked_comment_is_keyed_apart_from_the_same_comment_under_its_own_story():
    own = Chunk(10, 0, "T", "u", "text", kind="comment", comment_id=77)
    linked = [Chunk(story_id, 0, "T", "u", "text", kind="comment", comment_id=77, thread_root=10)
              for story_id in (900, 901)]
    keys = {chunk_key(own), *(chunk_key(c) for c in linked)}
    assert len(keys) == 3 and all(2**62 <= k < 2**63 for k in keys - {chunk_key(own)})
    assert chunk_key(linked[0]) == chunk_key(Chunk(**linked[0].to_dict()))  # stable through staging
