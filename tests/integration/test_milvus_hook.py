"""The Milvus hook and store against real Milvus Lite directories (one per test)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from include.config import CHUNKS_COLLECTION, PROJECT_ROOT, RetryPolicy
from include.records import Chunk, StoryOutcome
from include.store import ChunkStore
from include.store.client import MilvusUnavailable
from tests.store_queries import delete_story

sys.path.insert(0, str(__import__("include.config").config.PROJECT_ROOT / "plugins"))
from hn_providers.hooks.milvus import MilvusHook  # noqa: E402


@pytest.fixture
def lite_uri(tmp_path, monkeypatch) -> str:
    uri = str(tmp_path / "milvus.db")
    monkeypatch.setenv("AIRFLOW_CONN_MILVUS_DEFAULT", json.dumps({"conn_type": "milvus", "host": uri}))
    return uri


def story_batch(story_id: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk(story_id, i, f"Story {story_id}", "https://example.com", f"text {i} of {story_id}") for i in range(n)]
    return chunks, vectors, [StoryOutcome(story_id, "ingested", f"Story {story_id}", "https://example.com", chunk_count=n)]


def test_hook_creates_once_indexes_upserts_idempotently_and_deletes_by_story(lite_uri):
    with MilvusHook() as hook:
        assert hook.uri_and_token[0] == lite_uri
        store = hook.get_store()
        store.schema.ensure_collections()
        assert set(hook.conn.list_collections()) == {"hn_chunks", "hn_stories", "hn_jobs"}
        chunks, vectors, outcomes = story_batch(1, 5)
        assert store.writer.write_batch(chunks, vectors, outcomes) == 5
        assert store.schema.index_type() == "IVF_FLAT"
        store.writer.write_batch(chunks, vectors, outcomes)  # a retry of the same batch
        store.writer.write_batch(*story_batch(2, 3, seed=1))
        assert store.reader.count() == 8
        assert store.reader.count(1) == 5
        # Re-ingesting story 1 with fewer chunks replaces all of its rows.
        store.writer.write_batch(*story_batch(1, 2, seed=2))
        assert [r["chunk_index"] for r in store.reader.chunks_of(1)] == [0, 1]
        delete_story(store.client, 2)
        assert store.reader.count(2) == 0 and 2 not in store.ledger.states([2])
        hits = store.reader.dense(vectors[0], k=3)
        assert hits and hits[0]["story_id"] == 1

    # A new hook (a new task, a restart) keeps everything: nothing is dropped or rebuilt.
    with MilvusHook() as hook:
        store = hook.get_store()
        store.schema.ensure_collections()
        assert store.reader.count() == 2
        assert store.schema.index_type() == "IVF_FLAT"
        assert hook.test_connection()[0]


def test_failed_attempts_wait_in_wall_time_and_a_failed_refresh_keeps_old_chunks(lite_uri):
    with MilvusHook() as hook:
        store = ChunkStore(hook.conn, RetryPolicy(backoff=(60.0, 600.0)))
        store.schema.ensure_collections()
        failure = StoryOutcome(7, "failed", "T", "https://e.com", reason="story 7 <https://e.com>: fetch: HTTP 404", stage="fetch")
        no_chunks = ([], np.zeros((0, 384), np.float32))
        before = time.time()
        store.writer.write_batch(*no_chunks, [failure])
        first = store.ledger.states([7])[7]
        assert first["attempts"] == 1 and int(before) + 60 <= first["next_attempt_at"] <= time.time() + 61
        assert store.ledger.due_failed_ids(time.time()) == []  # not on the next run: in a minute
        assert store.ledger.due_failed_ids(first["next_attempt_at"]) == [7]
        store.writer.write_batch(*no_chunks, [failure])
        second = store.ledger.states([7])[7]
        assert second["attempts"] == 2 and second["next_attempt_at"] >= time.time() + 599
        # A site's Retry-After longer than the backoff wins; the third failure spends the attempts.
        store.writer.write_batch(*no_chunks, [replace(failure, retry_after=7200.0)])
        assert store.ledger.states([7])[7]["next_attempt_at"] == 0 and store.ledger.states([7])[7]["attempts"] == 3
        assert store.ledger.due_failed_ids(time.time() + 10**6) == []
        # A story deferred before any request keeps its attempts and waits what its host asked.
        store.writer.write_batch(*no_chunks, [StoryOutcome(9, "failed", retry_after=120.0, attempted=False)])
        deferred = store.ledger.states([9])[9]
        assert deferred["attempts"] == 0 and deferred["next_attempt_at"] >= time.time() + 119
        store.writer.write_batch(*story_batch(8, 4))
        store.writer.write_batch([], np.zeros((0, 384), np.float32), [StoryOutcome(8, "failed", reason="refresh broke")])
        state = store.ledger.states([8])[8]
        assert state["status"] == "ingested" and state["chunk_count"] == 4 and "refresh failed" in state["reason"]
        assert store.reader.count(8) == 4


def test_a_locked_directory_waits_then_fails_clearly(lite_uri):
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from pymilvus import MilvusClient; MilvusClient({lite_uri!r}); print('held', flush=True); "
                               "import time; time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(MilvusUnavailable, match="locked by another process"):
            MilvusHook(lock_timeout=2).get_conn()
        assert 1.5 < time.monotonic() - started < 15
    finally:
        holder.kill()
        holder.wait()
    with MilvusHook(lock_timeout=10) as hook:  # released at the holder's exit
        assert CHUNKS_COLLECTION not in hook.conn.list_collections()


def test_processes_opening_one_lite_directory_at_once_take_turns_without_an_error_logged(tmp_path):
    uri = str(tmp_path / "milvus.db")
    script = (f"import time; from include.store.client import open_client, close_client; "
              f"c = open_client({uri!r}); time.sleep(0.5); close_client(c, {uri!r}); print('done', flush=True)")
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, results
    assert all(out.strip() == "done" for out, _ in results)
    # Milvus Lite logs "Failed to start MilvusLite server" when a process tries a locked directory.
    assert not [err for _, err in results if "Failed to start" in err], results


def test_a_lite_path_must_end_in_db(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MILVUS_DEFAULT", json.dumps({"conn_type": "milvus", "host": str(tmp_path / "m")}))
    with pytest.raises(MilvusUnavailable, match=r"\.db"):
        MilvusHook().get_conn()


@pytest.mark.parametrize("executor", ["CeleryExecutor", "KubernetesExecutor", "airflow.providers.celery.executors.celery_executor.CeleryExecutor"])
def test_no_connection_under_a_distributed_executor_is_a_clear_error(tmp_path, monkeypatch, executor):
    monkeypatch.delenv("AIRFLOW_CONN_MILVUS_DEFAULT", raising=False)
    monkeypatch.setenv("HN_INGEST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    with pytest.raises(Exception, match=r"No Milvus connection 'milvus_default'.*AIRFLOW_CONN_MILVUS_DEFAULT"):
        MilvusHook().get_conn()
    assert not list(tmp_path.iterdir())  # no Lite file was made behind the user's back


def test_no_connection_on_one_machine_is_the_local_lite_file(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MILVUS_DEFAULT", raising=False)
    monkeypatch.setenv("HN_INGEST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    with MilvusHook() as hook:
        assert hook.uri_and_token[0] == str(tmp_path / "milvus.db")
        hook.conn.list_collections()
