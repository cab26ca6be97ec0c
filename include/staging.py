"""Batch files between tasks, under one object-storage base that every worker reaches.

The base is `HN_INGEST_STAGING_URL` (default `file://<data dir>/staging`; on many hosts a bucket,
for example `s3://minio_staging@hn-ingest/staging`, where the part before `@` names the Airflow
connection), opened through Airflow's object storage (`ObjectStoragePath`, fsspec underneath).

XCom carries only keys relative to that base (`<run>/batch-0003.json`), never a worker's local path:
every read resolves its key under the base, so a task never depends on the disk of the host that ran
the task before it. Per batch: `batch-0003.json` (chunks and outcomes of the extract stage) and
`batch-0003.npy` (their vectors). A file appears whole or not at all (one PUT on an object store;
temp file and rename on a filesystem), so a task killed mid-write leaves nothing a retry could take
for a finished batch.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from functools import lru_cache

import numpy as np

from include.config import staging_url
from include.extract import ExtractedBatch
from include.records import Chunk, StoryOutcome, ThreadOutcome

STALE_AFTER_S = 2 * 24 * 3600  # a failed run's staging is kept this long for a clear-and-rerun
_LOCAL_PROTOCOLS = {"", "file", "local"}


@lru_cache(maxsize=4)
def _base(url: str):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


def staging_base():
    """The `ObjectStoragePath` every batch key is resolved under."""
    return _base(staging_url())


def run_key(run_id: str) -> str:
    """A run's folder name under the base: the run id with characters unsafe in keys replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def batch_key(run_id: str, number: int, suffix: str) -> str:
    return f"{run_key(run_id)}/batch-{number:04d}{suffix}"


def resolve(key: str):
    """The path of `key` under the base; refuses anything that could point outside it."""
    parts = key.split("/")
    if not key or key.startswith("/") or "://" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"staging key {key!r} is not a plain relative key under {staging_url()}")
    return staging_base().joinpath(*parts)


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
    _remove_tree(resolve(run_key(run_id)))


def prune(max_age_s: float = STALE_AFTER_S) -> list[str]:
    """Remove the staging of runs that failed and were not re-run within `max_age_s`; returns their keys.

    A run folder's age is that of its newest file: object stores keep no time for "folders".
    """
    base = staging_base()
    if not base.exists():
        return []
    cutoff = time.time() - max_age_s
    removed = []
    for run in base.iterdir():
        if not run.is_dir():
            continue
        newest = max((f.stat().st_mtime for f in run.iterdir() if f.is_file()), default=0.0)
        if newest < cutoff:
            _remove_tree(run)
            removed.append(run.name)
    return removed


def _read(key: str) -> bytes:
    path = resolve(key)
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"staged batch {key!r} is missing under {staging_url()} (written by an "
                                f"earlier task of this run; was the run's staging removed or pruned?)") from exc


def write_whole(path, data: bytes) -> None:
    if path.protocol not in _LOCAL_PROTOCOLS:
        path.write_bytes(data)  # one PUT: readers see the old object or the new one, never a part
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.rename(path)


def _remove_tree(path) -> None:
    if path.exists():
        path.fs.rm(path.path, recursive=True)
