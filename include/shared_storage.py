"""Files every worker reaches, under one object-storage base (`HN_INGEST_STAGING_URL`).

The base defaults to `file://<data dir>/staging`; on many hosts it is a bucket, for example
`s3://minio_staging@hn-ingest/staging`, where the part before `@` names the Airflow connection. It is
opened through Airflow's object storage (`ObjectStoragePath`, fsspec underneath). Callers pass keys
relative to the base, never a worker's local path. A file appears whole or not at all (one PUT on an
object store; temp file and rename on a filesystem), so a task killed mid-write leaves nothing a retry
could take for a finished file. The batch files between tasks (`pipeline.staging`) and the robots.txt
cache (`crawl.robots`) live here.
"""

from __future__ import annotations

import os
from functools import lru_cache

from include.config import staging_url

_LOCAL_PROTOCOLS = {"", "file", "local"}


@lru_cache(maxsize=4)
def _base(url: str):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


def shared_base():
    """The `ObjectStoragePath` every key is resolved under."""
    return _base(staging_url())


def resolve(key: str):
    """The path of `key` under the base; refuses anything that could point outside it."""
    parts = key.split("/")
    if not key or key.startswith("/") or "://" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"staging key {key!r} is not a plain relative key under {staging_url()}")
    return shared_base().joinpath(*parts)


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


def remove_tree(path) -> None:
    if path.exists():
        path.fs.rm(path.path, recursive=True)
