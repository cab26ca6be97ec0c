"""Status, search and the API read "Bounded"; every other call reaches the client unchanged."""

from __future__ import annotations

from include.store.collections import CONSISTENCY, BoundedReads, count


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def query(self, collection, **kwargs):
        self.calls.append(("query", kwargs))
        return [{"count(*)": 3}]

    def upsert(self, collection, rows, **kwargs):
        self.calls.append(("upsert", kwargs))


def test_reads_become_bounded_and_writes_pass_through():
    client = RecordingClient()
    reads = BoundedReads(client)
    assert count(reads, "hn_stories", "") == 3  # the shared helpers ask for CONSISTENCY: overridden
    reads.upsert("hn_stories", [], timeout=5)
    assert CONSISTENCY == "Strong"
    assert [(name, kwargs.get("consistency_level")) for name, kwargs in client.calls] == [("query", "Bounded"),
                                                                                        ("upsert", None)]
