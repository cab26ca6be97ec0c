"""Batch files between tasks, under the shared object-storage base (`include.shared_storage`).

XCom carries only keys relative to that base (`<run>/batch-0003.json`), never a worker's local path:
every read resolves its key under the base, so a task never depends on the disk of the host that ran
the task before it. Per batch: `batch-0003.json` (chunks and outcomes of the extract stage) and
`batch-0003.npy` (their vectors), each written whole or not at all.

Why not Airflow's `XComObjectStorageBackend` (common-io), which also puts large XComs in object
storage: it is a deployment-wide setting that would change where every DAG's XComs live, it stores
values as JSON (a batch's vectors as JSON floats are ~3x the `.npy` and slower to parse), and where a
value goes depends on a size threshold. Explicit keys under one base keep the data path readable
(`<run>/batch-0003.npy`), leave other DAGs alone, and let a failed run's files wait for its rerun.
"""

from __future__ import annotations

import io
import json
import re
import time

import numpy as np

from include.config import staging_url
from include.records import Chunk, ExtractedBatch, StoryOutcome, ThreadOutcome
from include.shared_storage import remove_tree, resolve, shared_base, write_whole

STALE_AFTER_S = 2 * 24 * 3600  # a failed run's staging is kept this long for a clear-and-rerun


def run_key(run_id: str) -> str:
    """A run's folder name under the base: the run id with characters unsafe in keys replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def batch_key(run_id: str, number: int, suffix: str) -> str:
    return f"{run_key(run_id)}/batch-{number:04d}{suffix}"


def write_extracted(key: str, batch: ExtractedBatch) -> str:
    body = {"chunks": [c.to_dict() for c in batch.chunks], "outcomes": [o.to_dict() for o in batch.outcomes],
            "seconds": batch.seconds, "threads": [t.to_dict() for t in batch.threads]}
    write_whole(resolve(key), json.dumps(body, ensure_ascii=False).encode("utf-8"))
    return key


def read_extracted(key: str) -> ExtractedBatch:
    body = json.loads(_read(key).decode("utf-8"))
    return ExtractedBatch([Chunk(**c) for c in body["chunks"]], [StoryOutcome(**o) for o in body["outcomes"]],
                          body.get("seconds", {}), [ThreadOutcome(**t) for t in body.get("threads", [])])


def write_json(key: str, value) -> str:
    write_whole(resolve(key), json.dumps(value).encode("utf-8"))
    return key


def read_json(key: str):
    return json.loads(_read(key).decode("utf-8"))


def write_vectors(key: str, vectors: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    write_whole(resolve(key), buffer.getvalue())
    return key


def read_vectors(key: str) -> np.ndarray:
    return np.load(io.BytesIO(_read(key)), allow_pickle=False)


def remove_run(run_id: str) -> None:
    remove_tree(resolve(run_key(run_id)))


def prune(max_age_s: float = STALE_AFTER_S) -> list[str]:
    """Remove the staging of runs that failed and were not re-run within `max_age_s`; returns their keys.

    A run folder's age is that of its newest file: object stores keep no time for "folders".
    """
    base = shared_base()
    if not base.exists():
        return []
    cutoff = time.time() - max_age_s
    removed = []
    for run in base.iterdir():
        if not run.is_dir():
            continue
        newest = max((f.stat().st_mtime for f in run.iterdir() if f.is_file()), default=0.0)
        if newest < cutoff:
            remove_tree(run)
            removed.append(run.name)
    return removed


def _read(key: str) -> bytes:
    path = resolve(key)
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"staged batch {key!r} is missing under {staging_url()} (written by an "
                                f"earlier task of this run; was the run's staging removed or pruned?)") from exc

