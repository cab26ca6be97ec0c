"""The DAG file: parses fast without heavy imports, and has the shape users rely on."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from include.config import PROJECT_ROOT

HEAVY = ("torch", "sentence_transformers", "unstructured", "pymilvus", "trafilatura", "include.embed.model")


def load_dag(dag_id: str = "hn_ingest"):
    for folder in ("dags", "plugins"):
        if str(PROJECT_ROOT / folder) not in sys.path:
            sys.path.insert(0, str(PROJECT_ROOT / folder))
    import hn_ingest

    return getattr(hn_ingest, dag_id)()


def test_dag_file_parses_without_heavy_imports():
    code = (
        "import json, sys, time; sys.path[:0] = ['dags', 'plugins']; t = time.monotonic(); import hn_ingest; "
        "print(json.dumps([time.monotonic() - t, sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{tuple(h.split('.')[0] for h in HEAVY)!r} or m == 'include.embed.model')]))"
    )
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    _, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert heavy == [], f"heavy modules imported at parse time: {heavy}"
    assert time.monotonic() - started < 60


def test_dag_shape_and_contracts():
    dag = load_dag()
    assert dag.dag_id == "hn_ingest"
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert set(dag.task_dict) == {"discover_stories", "extract_batch", "embed_batch", "write_batch", "report_run"}
    assert set(dag.params.keys()) >= {"reindex", "max_stories", "batch_size", "conditional"}
    for task_id in ("extract_batch", "embed_batch", "write_batch"):
        task = dag.task_dict[task_id]
        assert task.map_index_template, task_id
    # Writers are bounded across every run (backfills, manual runs) by one pool, not per run.
    assert dag.task_dict["write_batch"].pool == "milvus_writer"
    assert dag.task_dict["embed_batch"].queue == "default"
    assert dag.task_dict["discover_stories"].retries >= 1
    assert type(dag.timetable).__name__ == "DeltaDataIntervalTimetable"
    assert dag.timetable.delta.total_seconds() == 15
    # Lineage: each write updates the chunks Asset; every task alerts once its retries are spent.
    assert [a.name for a in dag.task_dict["write_batch"].outlets] == ["hn_chunks"]
    for task in dag.task_dict.values():
        callbacks = task.on_failure_callback if isinstance(task.on_failure_callback, list) else [task.on_failure_callback]
        assert any(type(c).__name__ == "IngestFailureNotifier" for c in callbacks), task.task_id


def test_the_backfill_dag_runs_the_same_stages_one_run_per_hour_of_history():
    live, backfill = load_dag(), load_dag("hn_backfill")
    assert set(backfill.task_dict) == set(live.task_dict)
    assert backfill.task_dict["discover_stories"].windowed and not live.task_dict["discover_stories"].windowed
    # A window of an hour: a year of history is 8,760 runs (the live DAG's 15 s intervals made 2.1 million).
    assert type(backfill.timetable).__name__ == "DeltaDataIntervalTimetable"
    assert backfill.timetable.delta.total_seconds() == 3600
    assert backfill.catchup is False and backfill.task_dict["write_batch"].pool == "milvus_writer"
    assert set(backfill.params.keys()) == set(live.params.keys()) - {"cancel_reindex"}


def test_embedding_queue_and_writer_pool_are_settings():
    code = ("import sys; sys.path[:0] = ['dags', 'plugins']; import hn_ingest; d = hn_ingest.hn_ingest(); "
            "print(d.task_dict['embed_batch'].queue, d.task_dict['write_batch'].pool, d.task_dict['extract_batch'].queue)")
    env = {"PATH": "/usr/bin:/bin", "HN_INGEST_EMBEDDING_QUEUE": "embedding", "HN_INGEST_WRITER_POOL": "milvus_big",
           "PYTHONPATH": str(PROJECT_ROOT), "AIRFLOW_HOME": "/tmp/hn-ingest-unused-airflow-home"}
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["embedding", "milvus_big", "default"]


def test_the_reindex_dag_runs_the_same_stages_below_the_live_ones():
    live, reindex = load_dag(), load_dag("hn_reindex")
    assert set(reindex.task_dict) == set(live.task_dict)
    assert reindex.task_dict["discover_stories"].reindex_only and not live.task_dict["discover_stories"].reindex_only
    assert reindex.max_active_runs == 1 and reindex.catchup is False and reindex.max_active_tasks == 2
    assert reindex.task_dict["write_batch"].pool == live.task_dict["write_batch"].pool
    # A live task outranks every task of a slice for an executor or writer-pool slot.
    for task_id in ("extract_batch", "embed_batch", "write_batch"):
        assert reindex.task_dict[task_id].priority_weight < live.task_dict[task_id].priority_weight, task_id
    assert set(reindex.params.keys()) == {"cancel_reindex"}
