"""Which stored stories a lifecycle check removes or ingests again, against the replay's real API."""

from __future__ import annotations

from include.hn.client import HackerNewsClient
from include.hn.lifecycle import check_stories
from tests.replay_server import ReplayServer, send_json

STATE = {"status": "ingested", "item_hash": ""}


def test_only_deleted_or_dead_items_remove_a_story_and_a_null_one_is_left_for_later():
    replay = ReplayServer()
    items = {1: {"deleted": True}, 2: {"dead": True}, 3: {}, 4: {}}
    for story_id, extra in items.items():
        replay.add_item({"id": story_id, "type": "story", "time": 1_600_000_000, "title": f"Story {story_id}",
                         "url": f"https://example.com/{story_id}", **extra})
    # HN answers null for an item it has not propagated yet, or for a moment: not a deletion.
    replay.routes["/v0/item/3.json"] = lambda request: send_json(request, None)
    with replay:
        changes = check_stories(HackerNewsClient(base_url=replay.api_url, algolia_url=replay.algolia_url),
                                {i: dict(STATE) for i in items}, now=1_700_000_000)
    assert sorted(changes.removed) == [1, 2] and changes.reingest == []
    assert "deleted" in changes.removed[1] and "dead" in changes.removed[2]
