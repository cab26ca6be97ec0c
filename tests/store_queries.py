"""Store operations only the tests need (the pipeline never deletes a story outright)."""

from __future__ import annotations

from include.store.collections import CHUNKS_COLLECTION, STORIES_COLLECTION


def delete_story(client, story_id: int) -> None:
    client.delete(CHUNKS_COLLECTION, filter=f"story_id == {int(story_id)}")
    client.delete(STORIES_COLLECTION, filter=f"story_id == {int(story_id)}")
