"""The warm embedding service: same vectors as in-process, started once per host, reused, robust, optional."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from include.embed import service as embedding_service
from include.embed.model import embed_texts

TEXTS = ["Airflow schedules the ingestion.", "Milvus stores the vectors.", "A third, unrelated sentence about cats."]


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    monkeypatch.setenv("HN_INGEST_RUNTIME_DIR", str(folder))
    monkeypatch.setenv("HN_INGEST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HN_INGEST_EMBEDDING_SERVICE_IDLE", "20")
    yield folder
    pid_file = folder / "embedding.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            pass


def test_service_starts_once_and_matches_in_process_vectors(runtime, tmp_path):
    started = time.monotonic()
    remote = embedding_service.embed(TEXTS)
    first = time.monotonic() - started
    assert embedding_service._reachable(runtime)
    started = time.monotonic()
    again = embedding_service.embed(TEXTS)
    second = time.monotonic() - started
    local = embed_texts(TEXTS)
    assert remote.shape == (3, 384) and np.allclose(remote, local, atol=1e-5) and np.allclose(again, remote)
    assert second < first  # the second call finds the model warm
    assert oct((runtime / "embedding.sock").stat().st_mode & 0o777) == "0o600"
    assert oct(runtime.stat().st_mode & 0o777) == "0o700"
    # Nothing of the service is in the data directory, which other hosts may mount.
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").iterdir())


def test_a_client_dying_mid_request_does_not_kill_the_service(runtime):
    embedding_service.embed(TEXTS[:1])
    pid = int((runtime / "embedding.pid").read_text())
    # A client that authenticates, sends a large request and dies before reading the answer.
    code = ("import os, sys; from multiprocessing.connection import Client; "
            f"c = Client({str(runtime / 'embedding.sock')!r}, family='AF_UNIX', authkey=open({str(runtime / 'embedding.key')!r}).read().strip().encode()); "
            "c.send(('all-MiniLM-L6-v2', 64, ['a sentence to embed'] * 400)); os._exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    # And one that connects without the key and hangs up.
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(runtime / "embedding.sock"))
    vectors = embedding_service.embed_remote(TEXTS, embedding_service.EmbeddingConfig())
    assert vectors.shape == (3, 384)
    assert int((runtime / "embedding.pid").read_text()) == pid  # the same service answered


def test_a_service_that_cannot_start_fails_in_seconds_and_tasks_embed_locally(runtime, monkeypatch):
    monkeypatch.setenv("HN_INGEST_EMBEDDING_MODEL", "/nonexistent/model")
    config = embedding_service.EmbeddingConfig(model_name="/nonexistent/model")
    started = time.monotonic()
    with pytest.raises(OSError, match="exited with code"):
        embedding_service.embed_remote(TEXTS, config)
    assert time.monotonic() - started < 30
    assert not (runtime / "embedding.sock").exists()


def test_a_socket_left_by_a_dead_service_is_replaced(runtime):
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(runtime / "embedding.sock"))  # bound, never listening: what a killed service leaves
    stale.close()
    assert embedding_service.embed(TEXTS[:1]).shape == (1, 384)
    assert embedding_service._reachable(runtime)


def test_a_runtime_dir_others_can_enter_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "open"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    monkeypatch.setenv("HN_INGEST_RUNTIME_DIR", str(folder))
    with pytest.raises(PermissionError, match="0700"):
        embedding_service.runtime_dir()
    assert embedding_service.embed(TEXTS[:1]).shape == (1, 384)  # the task still embeds, in process


def test_turned_off_it_embeds_in_process(runtime, monkeypatch):
    monkeypatch.setenv("HN_INGEST_EMBEDDING_SERVICE", "off")
    vectors = embedding_service.embed(TEXTS[:1])
    assert vectors.shape == (1, 384)
    assert not (runtime / "embedding.sock").exists()


def test_a_warm_up_in_the_background_returns_at_once_and_the_first_embed_uses_that_service(runtime):
    started = time.monotonic()
    assert embedding_service.warm_up_in_background() is True
    assert time.monotonic() - started < 2  # the model loads in another process
    vectors = embedding_service.embed(TEXTS)  # waits on the start lock, then finds the service ready
    assert vectors.shape == (3, 384)
    pid = int((runtime / "embedding.pid").read_text())
    assert embedding_service.warm_up_in_background() is False  # running: nothing to start
    embedding_service.embed(TEXTS[:1])
    assert int((runtime / "embedding.pid").read_text()) == pid  # one service, not two
    listed = subprocess.run(["pgrep", "-af", f"include.embed.service --runtime-dir {runtime} --model"],
                            capture_output=True, text=True).stdout.splitlines()
    services = [line.split()[0] for line in listed if "--start-only" not in line]  # not the helper, if still exiting
    assert services == [str(pid)], listed


def test_a_background_embed_lets_a_live_request_in_between_its_model_batches(runtime, monkeypatch):
    """A reindex's embed goes one model batch per request: a live request sent meanwhile is answered
    before the reindex's last batch, not after all of them (the service answers one request at a time)."""
    import threading

    from include.config import EmbeddingConfig

    config = EmbeddingConfig(batch_size=4)
    texts = [f"Reindexed chunk number {i} about sourdough, rust and milvus." for i in range(240)]
    embedding_service.embed(TEXTS)  # the service up and warm
    asked, first_sent = [], threading.Event()
    real_ask = embedding_service._ask

    def counting_ask(folder, request):
        asked.append(len(request[2]))
        first_sent.set()
        return real_ask(folder, request)

    monkeypatch.setattr(embedding_service, "_ask", counting_ask)
    finished: dict[str, float] = {}
    result: dict[str, np.ndarray] = {}

    def background() -> None:
        result["background"] = embedding_service.embed(texts, config, background=True)
        finished["background"] = time.monotonic()

    worker = threading.Thread(target=background)
    worker.start()
    assert first_sent.wait(60)
    live = embedding_service.embed(TEXTS)
    finished["live"] = time.monotonic()
    worker.join(300)
    assert finished["live"] < finished["background"]
    assert asked.count(4) == 60 and asked.count(len(TEXTS)) == 1  # 60 requests of one model batch, then the live one
    np.testing.assert_allclose(result["background"], embed_texts(texts, config), atol=1e-5)
    np.testing.assert_allclose(live, embed_texts(TEXTS), atol=1e-5)
