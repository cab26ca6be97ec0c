"""Past the size where Milvus Lite stops fitting, runs and /status say so and name the way out."""

from __future__ import annotations

from include.store.client import LITE_MAX_CHUNKS, lite_size_warning


def test_a_lite_store_past_the_limit_warns_with_the_move_command_and_a_server_never_does():
    warning = lite_size_warning("data/milvus.db", LITE_MAX_CHUNKS + 1)
    assert warning and "include.ops.move_store --from data/milvus.db" in warning
    assert lite_size_warning("data/milvus.db", LITE_MAX_CHUNKS) is None
    assert lite_size_warning("http://milvus:19530", 10 * LITE_MAX_CHUNKS) is None
