"""What must hold in the store after any fault: no duplicated row, no lost story, no half-written story.

Each helper takes the report of `python -m include.ops.status --json --chunks` (`AirflowEnv.status`).
"""

from __future__ import annotations


def chunk_rows(status: dict) -> set[tuple[int, int, int, str]]:
    """(id, story_id, chunk_index, text) of every chunk row: equal sets mean equal stores."""
    return {(r["id"], r["story_id"], r["chunk_index"], r["text"]) for r in status["chunk_rows"]}


def assert_no_duplicates(status: dict) -> None:
    assert status["chunks"] == status["distinct_chunk_ids"] == status["distinct_story_chunk_pairs"], status


def assert_stories_whole(status: dict) -> None:
    """Every ingested story has exactly its chunks 0..n-1, as its state row says; no other has chunks."""
    indexes: dict[int, list[int]] = {}
    for row in status["chunk_rows"]:
        indexes.setdefault(row["story_id"], []).append(row["chunk_index"])
    for story in status["story_rows"]:
        expected = list(range(story["chunk_count"])) if story["status"] == "ingested" else []
        assert sorted(indexes.pop(story["story_id"], [])) == expected, story
    assert not indexes, f"chunks of stories with no state row: {sorted(indexes)}"
    assert len(status["chunk_rows"]) == status["chunks"], "chunk rows of stories with no state row"


def assert_every_story_accounted_for(status: dict, offered: set[int]) -> None:
    """No story lost: each one offered is ingested, or recorded as failed/skipped with a reason."""
    rows = {r["story_id"]: r for r in status["story_rows"]}
    missing = offered - set(rows)
    assert not missing, f"stories offered but not in the store: {sorted(missing)}"
    for story_id in offered:
        row = rows[story_id]
        assert row["status"] == "ingested" or row["reason"], row
