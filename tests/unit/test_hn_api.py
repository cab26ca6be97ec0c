"""The story source: items to stories, API retries, Algolia time windows, over a real replay."""

from __future__ import annotations

import pytest

from include.hn.client import HackerNewsClient, HackerNewsUnavailable, story_from_item
from include.records import Story, StoryOutcome
from tests import corpus
from tests.replay_server import ReplayServer, send, send_json

BASE = {"id": 1, "type": "story", "title": "A title", "time": 1609282290, "by": "someone"}


def outcome(item) -> Story | StoryOutcome:
    return story_from_item(1, item)


def test_url_story_and_text_post_become_stories():
    assert outcome({**BASE, "url": "https://example.com/a"}).url == "https://example.com/a"
    post = outcome({**BASE, "text": "I&#x27;m asking<p>Second paragraph"})
    assert isinstance(post, Story) and post.url is None and post.text_html


def test_a_null_item_is_not_a_deletion_but_a_failure_tried_again():
    result = outcome(None)
    assert isinstance(result, StoryOutcome) and result.status == "failed" and result.stage == "item"
    assert "not available yet" in result.reason and "story 1" in result.reason


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"id": 1, "deleted": True, "type": "story", "time": 1}, "deleted"),
        ({**BASE, "dead": True, "url": "https://example.com"}, "dead"),
        ({**BASE, "type": "comment", "text": "hi"}, "not a story"),
        ({**BASE, "url": "", "text": ""}, "title only"),  # the 2014 API shape
        ({**{k: v for k, v in BASE.items() if k != "title"}, "url": "https://example.com"}, "no title"),
        ({**{k: v for k, v in BASE.items() if k != "time"}, "url": "https://example.com"}, "no creation time"),
        ({**BASE, "url": "javascript:alert(1)"}, "unsupported URL scheme"),
        ({**BASE, "url": "file:///etc/passwd"}, "unsupported URL scheme"),
        ({**BASE, "url": "ftp://example.com/x"}, "unsupported URL scheme"),
    ],
)
def test_items_that_cannot_be_ingested_are_skipped_with_a_reason(item, reason):
    result = outcome(item)
    assert isinstance(result, StoryOutcome) and result.status == "skipped"
    assert reason in result.reason and "story 1" in result.reason


def test_old_api_shape_with_empty_strings(require_corpus):
    items = corpus.hn_items("vcr-goddamnyouryan-coven-api.jsonl")
    results = [story_from_item(i["id"], i) for i in items if i.get("type") == "story"]
    stories = [r for r in results if isinstance(r, Story)]
    assert len(stories) >= 300
    assert all(s.url is None or s.url.startswith("http") for s in stories)
    assert all(s.text_html is None or s.text_html.strip() for s in stories)


def test_newstories_retries_server_errors_then_succeeds():
    with ReplayServer() as server:
        calls = []

        def flaky(request):
            calls.append(1)
            if len(calls) <= 2:
                send(request, 500, b"oops", "text/plain")
            else:
                send_json(request, [3, 2, 1])

        server.routes["/v0/newstories.json"] = flaky
        assert HackerNewsClient(base_url=server.api_url).new_story_ids() == [3, 2, 1]
        assert len(calls) == 3


def test_truncated_json_is_retried_and_a_dead_api_raises():
    with ReplayServer() as server:
        calls = []

        def truncated_once(request):
            calls.append(1)
            body = b'{"id": 7, "type": "story", "tit' if len(calls) == 1 else b'{"id": 7}'
            send(request, 200, body, "application/json")

        server.routes["/v0/item/7.json"] = truncated_once
        client = HackerNewsClient(base_url=server.api_url)
        assert client.get_item(7) == {"id": 7}
        server.routes["/v0/newstories.json"] = lambda r: send(r, 503, b"down", "text/plain")
        with pytest.raises(HackerNewsUnavailable, match="HTTP 503"):
            client.new_story_ids()


def test_algolia_window_is_exact_and_split_where_algolia_would_cut_it():
    with ReplayServer() as server:
        for i in range(25):
            server.add_item({**BASE, "id": 100 + i, "time": 1000 + i * 10, "url": "https://example.com"})
        server.add_item({**BASE, "id": 999, "time": 1100, "dead": True})
        client = HackerNewsClient(base_url=server.api_url, algolia_url=server.algolia_url)
        assert client.story_ids_created_between(1050, 1150) == list(range(105, 115))
        assert len(server.algolia_searches) == 1  # a window that fits: one request
        # Algolia serves no hit past its limit: a window holding more is split until each part fits.
        server.algolia_max_hits = 3
        server.algolia_searches.clear()
        limited = HackerNewsClient(base_url=server.api_url, algolia_url=server.algolia_url, algolia_max_hits=3)
        assert limited.story_ids_created_between(1050, 1150) == list(range(105, 115))
        assert 4 <= len(server.algolia_searches) <= 15


def test_algolia_calls_wait_for_a_turn_in_the_shared_budget():
    turns = []
    with ReplayServer() as server:
        server.add_item({**BASE, "id": 100, "time": 1000, "url": "https://example.com"})
        granted = HackerNewsClient(base_url=server.api_url, algolia_url=server.algolia_url,
                                   algolia_turn=lambda wait: turns.append(wait) or True)
        assert granted.story_ids_created_between(900, 1100) == [100] and turns == [600.0]
        refused = HackerNewsClient(base_url=server.api_url, algolia_url=server.algolia_url,
                                   algolia_turn=lambda wait: False)
        with pytest.raises(HackerNewsUnavailable, match="Algolia's request budget"):
            refused.thread(100)
        assert len(server.algolia_searches) == 1  # the refused call sent nothing
