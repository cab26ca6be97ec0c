"""The warm embedding service: same vectors as in-process, started once, reused, and optional."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from include import embedding_service
from include.embedding import embed_texts

TEXTS = ["Airflow schedules the ingestion.", "Milvus stores the vectors.", "A third, unrelated sentence about cats."]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HN_INGEST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HN_INGEST_EMBEDDING_SERVICE_IDLE", "20")
    yield tmp_path
    pid_file = tmp_path / "embedding.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_service_starts_once_and_matches_in_process_vectors(data_dir):
    started = time.monotonic()
    remote = embedding_service.embed(TEXTS)
    first = time.monotonic() - started
    assert embedding_service._reachable(embedding_service.socket_path())
    started = time.monotonic()
    again = embedding_service.embed(TEXTS)
    second = time.monotonic() - started
    local = embed_texts(TEXTS)
    assert remote.shape == (3, 384) and np.allclose(remote, local, atol=1e-5) and np.allclose(again, remote)
    assert second < first  # the second call finds the model warm
    assert oct((data_dir / "embedding.sock").stat().st_mode & 0o777) == "0o600"


def test_turned_off_it_embeds_in_process(data_dir, monkeypatch):
    monkeypatch.setenv("HN_INGEST_EMBEDDING_SERVICE", "off")
    vectors = embedding_service.embed(TEXTS[:1])
    assert vectors.shape == (1, 384)
    assert not (data_dir / "embedding.sock").exists()
