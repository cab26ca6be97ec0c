"""Batch files between tasks: XCom carries only their paths, never chunk texts or vectors.

Layout: `<data>/staging/<run id>/batch-0003.json` (chunks and outcomes of the extract stage) and
`batch-0003.npy` (their vectors). Files are written atomically (temp file, then rename), so a task
killed mid-write leaves nothing that a retry could mistake for a finished batch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from include.config import staging_dir
from include.extract import ExtractedBatch
from include.records import Chunk, StoryOutcome


def run_dir(run_id: str) -> Path:
    return staging_dir() / re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def write_extracted(path: Path, batch: ExtractedBatch) -> Path:
    body = {"chunks": [c.to_dict() for c in batch.chunks], "outcomes": [o.to_dict() for o in batch.outcomes],
            "seconds": batch.seconds}
    return _atomic_write(path, lambda f: f.write(json.dumps(body, ensure_ascii=False).encode("utf-8")))


def read_extracted(path: Path) -> ExtractedBatch:
    body = json.loads(Path(path).read_text(encoding="utf-8"))
    return ExtractedBatch([Chunk(**c) for c in body["chunks"]], [StoryOutcome(**o) for o in body["outcomes"]],
                          body.get("seconds", {}))


def write_vectors(path: Path, vectors: np.ndarray) -> Path:
    return _atomic_write(path, lambda f: np.save(f, vectors, allow_pickle=False))


def read_vectors(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def remove_run(run_id: str) -> None:
    shutil.rmtree(run_dir(run_id), ignore_errors=True)


def prune(max_age_s: float = 2 * 24 * 3600) -> None:
    """Remove staging left by failed runs that nobody re-ran (kept meanwhile for a clear-and-retry)."""
    root = staging_dir()
    if not root.is_dir():
        return
    cutoff = time.time() - max_age_s
    for child in root.iterdir():
        if child.is_dir() and child.stat().st_mtime < cutoff:
            shutil.rmtree(child, ignore_errors=True)


def _atomic_write(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
