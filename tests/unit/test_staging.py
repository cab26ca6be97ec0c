"""Staging under one base URL: keys, never worker paths; whole files; clean-up and pruning from any worker."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from include.pipeline import staging
from include.pipeline.extract import ExtractedBatch
from include.records import Chunk, StoryOutcome

RUN = "scheduled__2026-11-23T10:00:15+00:00"


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.setenv("HN_INGEST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HN_INGEST_STAGING_URL", (tmp_path / "shared" / "staging").as_uri())
    return tmp_path / "shared" / "staging"


def batch() -> ExtractedBatch:
    return ExtractedBatch([Chunk(7, 0, "Title", "https://example.com", "Text with ünïcode")],
                          [StoryOutcome(7, "ingested", "Title", "https://example.com", chunk_count=1)], {"fetch": 0.5})


def test_batches_round_trip_under_the_base_and_nothing_under_the_data_dir(base, tmp_path):
    key = staging.write_extracted(staging.batch_key(RUN, 3, ".json"), batch())
    assert key == "scheduled__2026-11-23T10_00_15_00_00/batch-0003.json"  # a key, not a path
    vectors = np.random.default_rng(0).normal(size=(1, 384)).astype(np.float32)
    vectors_key = staging.write_vectors(key.removesuffix(".json") + ".npy", vectors)
    assert staging.read_extracted(key) == batch()
    assert np.array_equal(staging.read_vectors(vectors_key), vectors)
    assert sorted(p.name for p in (base / staging.run_key(RUN)).iterdir()) == ["batch-0003.json", "batch-0003.npy"]
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("key", ["/etc/passwd", "../outside.json", "run/../../outside.json", "file:///etc/passwd",
                                 "s3://bucket/key", "", "run//batch.json"])
def test_keys_that_could_leave_the_base_are_refused(base, key):
    with pytest.raises(ValueError, match="not a plain relative key"):
        staging.resolve(key)


def test_a_missing_batch_names_the_key_and_the_base(base):
    with pytest.raises(FileNotFoundError, match=r"batch-0001\.json.*missing under file://"):
        staging.read_extracted(staging.batch_key(RUN, 1, ".json"))


def test_remove_run_and_prune_work_on_the_shared_base(base):
    done = staging.write_extracted(staging.batch_key(RUN, 0, ".json"), batch())
    old = staging.write_extracted(staging.batch_key("manual__old", 0, ".json"), batch())
    fresh = staging.write_extracted(staging.batch_key("manual__fresh", 0, ".json"), batch())
    staging.remove_run(RUN)
    assert not staging.resolve(done).exists()
    three_days_ago = time.time() - 3 * 24 * 3600
    os.utime(staging.resolve(old).path, (three_days_ago, three_days_ago))
    assert staging.prune() == ["manual__old"]
    assert not staging.resolve(old).exists() and staging.resolve(fresh).exists()
    staging.remove_run("never-staged")  # nothing there: no error


def test_an_interrupted_write_leaves_no_file_a_reader_could_take_for_a_batch(base, monkeypatch):
    key = staging.batch_key(RUN, 5, ".json")

    def crash(*args):
        raise OSError("disk gone mid-write")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        staging.write_extracted(key, batch())
    assert not staging.resolve(key).exists()
