"""Open a Milvus client from a connection URI: a filesystem path is Milvus Lite, a URL a server.

Milvus Lite lets one process at a time open a database directory (an flock on its LOCK file, held
until the client is released). Opening waits for the lock a bounded time, so a search run by hand or
an overlapping backfill task waits its turn instead of failing at once; closing releases the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from include.config import default_milvus_uri

# Milvus Lite imports FAISS, whose loader logs at INFO every instruction set it could not load (8 lines
# per task) before the one it uses: not news to anyone reading a task log.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

# pymilvus shares one gRPC channel per process and address, which `close()` leaves open, pinging every
# 10 s: a Python gRPC server (`milvus-lite server`, and the one behind a Lite `.db` path) answers an idle
# pinger with GOAWAY too_many_pings, and a later client of the process can fail to connect. Each client gets its own channel (`dedicated=True`, closed by `close()`) that
# sends no pings while idle, and at most one per 10 min during a call.
QUIET_KEEPALIVE = {"grpc.keepalive_permit_without_calls": 0, "grpc.keepalive_time_ms": 600_000}


# Where Milvus Lite stops fitting this pipeline on 2 cores / 24 GB (README, "When Milvus Lite stops
# fitting"): every task process opens the store and loads it whole, so each pays open time and memory
# in proportion to the store. Past this many chunks, runs and /status say so.
LITE_MAX_CHUNKS = int(os.environ.get("HN_INGEST_LITE_MAX_CHUNKS", "100000"))


def lite_size_warning(uri: str, chunks: int) -> str | None:
    """A warning when a Milvus Lite store has grown past `LITE_MAX_CHUNKS`; None for a server or a small store."""
    if not is_lite_uri(uri) or chunks <= LITE_MAX_CHUNKS:
        return None
    return (f"the Milvus Lite store {uri} holds {chunks:,} chunks, past the {LITE_MAX_CHUNKS:,} where Milvus Lite "
            f"stops fitting (each task opens and loads the whole store; see the README): move it to a Milvus "
            f"server with `python -m include.ops.move_store --from {uri} --to http://HOST:19530`")


class MilvusUnavailable(RuntimeError):
    """Milvus cannot be opened or written: the task must fail so Airflow retries it."""


def is_lite_uri(uri: str) -> bool:
    return urlsplit(uri).scheme not in ("http", "https", "tcp", "grpc", "unix")


def uri_from_connection(host: str | None, password: str | None = None) -> tuple[str, str]:
    """(uri, token) from a connection's host and password; an empty host means the default Lite file."""
    uri = (host or "").strip() or default_milvus_uri()
    return uri, (password or "")


def uri_from_environment() -> tuple[str, str]:
    """The `milvus_default` connection as Airflow would read it from the environment, for CLIs."""
    raw = os.environ.get("AIRFLOW_CONN_MILVUS_DEFAULT", "").strip()
    if not raw:
        return uri_from_connection(None)
    if raw.startswith("{"):
        conn = json.loads(raw)
        return uri_from_connection(conn.get("host"), conn.get("password"))
    return uri_from_connection(raw)


def open_client(uri: str, token: str = "", lock_timeout: float = 60.0, db_name: str = ""):
    """A `MilvusClient` for `uri`, waiting up to `lock_timeout` seconds for a locked Lite directory.

    `db_name` is a server's database (empty: its default); Milvus Lite has only the default one.
    """
    from pymilvus import MilvusClient

    if not is_lite_uri(uri):
        try:
            return MilvusClient(uri=uri, token=token, db_name=db_name, dedicated=True, grpc_options=QUIET_KEEPALIVE)
        except Exception as exc:  # noqa: BLE001 - any connection error means "retry later"
            raise MilvusUnavailable(f"cannot connect to Milvus at {uri}: {exc}") from exc
    path = Path(uri).resolve()
    if path.suffix != ".db":
        raise MilvusUnavailable(f"a Milvus Lite path must end in .db (got {uri!r}); a server URI starts with http://")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MilvusUnavailable(f"cannot create the Milvus Lite directory {path.parent}: {exc}") from exc
    deadline = time.monotonic() + lock_timeout
    with _turn_to_open(path, deadline):
        # Wait for the holder here: an attempt on a locked directory makes Milvus Lite log an ERROR.
        while lite_is_locked(path) and time.monotonic() < deadline:
            time.sleep(0.2)
        while True:
            try:
                return MilvusClient(uri=str(path), db_name=db_name, dedicated=True, grpc_options=QUIET_KEEPALIVE)
            except Exception as exc:  # noqa: BLE001 - pymilvus raises a generic error for every cause
                if lite_is_locked(path) and time.monotonic() < deadline:
                    time.sleep(0.5)  # opened by a process outside this project between the check and here
                    continue
                if lite_is_locked(path):
                    cause = (f"it is locked by another process (only one process may open a Milvus Lite directory; "
                             f"run `milvus-lite server --data-dir {path}` and connect to it for concurrent access)")
                else:
                    cause = unwritable_reason(path) or f"{type(exc).__name__}: {exc}"
                raise MilvusUnavailable(f"cannot open Milvus Lite database {path}: {cause}") from exc


@contextmanager
def _turn_to_open(path: Path, deadline: float) -> Iterator[None]:
    """Hold `<name>.opening` beside the Lite directory while checking its lock and opening it.

    Without it two waiting processes both see the directory free and race; the loser's failed start
    is logged as an ERROR by Milvus Lite. Past the deadline (or on a read-only disk) open unqueued.
    """
    try:
        fd = os.open(path.parent / f"{path.name}.opening", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the flock


def lite_is_locked(path: Path) -> bool:
    """True when another process holds the Lite directory's lock."""
    lock_file = path / "LOCK"
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)


def unwritable_reason(path: Path) -> str | None:
    """Why the Lite directory cannot be written (read-only mount, permissions, full disk), or None.

    pymilvus reports every open failure as "Open local milvus failed"; this names the real cause.
    """
    probe = (path if path.is_dir() else path.parent) / f".write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"its directory is not writable ({exc.strerror}: {exc.filename})"
    return None


def close_client(client, uri: str) -> None:
    """Close the client and, for Milvus Lite, release the directory lock for other processes."""
    try:
        client.close()
    finally:
        if is_lite_uri(uri):
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(str(Path(uri).resolve()))
