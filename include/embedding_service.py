"""A warm embedding process shared by task processes on one machine.

Under the scheduler every task instance is a new process, and importing torch and
sentence-transformers costs ~5 s per process: more than embedding a micro-batch. The first embed task
starts this service in the background (its own session, so it outlives the task); later tasks send it
their texts over a Unix socket in the data directory and get the vectors back. It exits after
`idle_timeout` seconds without a request. If it cannot be reached or started, the task embeds in its
own process: the service only ever saves time.

    python -m include.embedding_service --socket data/embedding.sock   # normally started on demand
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Client, Listener
from pathlib import Path

import numpy as np

from include.config import PROJECT_ROOT, EmbeddingConfig, data_dir

log = logging.getLogger(__name__)

START_TIMEOUT = 120.0
IDLE_TIMEOUT = float(os.environ.get("HN_INGEST_EMBEDDING_SERVICE_IDLE", 900))


def socket_path() -> Path:
    return data_dir() / "embedding.sock"


def _authkey(path: Path) -> bytes:
    """A per-data-directory secret, readable by its owner only: the socket carries pickled data."""
    key_file = path.with_suffix(".key")
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = key_file.with_name(f".{key_file.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, key_file)  # atomic: the first writer wins, nobody reads a half-written key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return key_file.read_text().strip().encode()


def embed(texts: list[str], config: EmbeddingConfig = EmbeddingConfig()) -> np.ndarray:
    """Embed through the warm service (started on demand), or in this process when it is off or fails.

    `HN_INGEST_EMBEDDING_SERVICE=off` embeds in the task process.
    """
    if texts and os.environ.get("HN_INGEST_EMBEDDING_SERVICE", "on").lower() != "off":
        try:
            return embed_remote(texts, config)
        except (OSError, EOFError) as exc:
            log.warning("embedding service unavailable (%s): embedding in this process", exc)
    from include.embedding import embed_texts

    return embed_texts(texts, config)


def embed_remote(texts: list[str], config: EmbeddingConfig) -> np.ndarray:
    """Embed through the service, starting it when it is not running. Raises OSError when impossible."""
    path = socket_path()
    try:
        return _ask(path, texts, config)
    except (FileNotFoundError, ConnectionRefusedError):
        _start(path, config)
        return _ask(path, texts, config)


def _ask(path: Path, texts: list[str], config: EmbeddingConfig) -> np.ndarray:
    with Client(str(path), family="AF_UNIX", authkey=_authkey(path)) as conn:
        conn.send((config.model_name, config.batch_size, texts))
        status, payload = conn.recv()
    if status != "ok":
        raise OSError(f"embedding service failed: {payload}")
    return payload


def _start(path: Path, config: EmbeddingConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the others find it running
        if _reachable(path):
            return
        path.unlink(missing_ok=True)
        log_file = open(path.with_suffix(".log"), "ab")
        subprocess.Popen(
            [sys.executable, "-m", "include.embedding_service", "--socket", str(path), "--model", config.model_name],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))},
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _reachable(path):
            if time.monotonic() > deadline:
                raise OSError(f"embedding service did not start in {START_TIMEOUT:.0f} s (see {path.with_suffix('.log')})")
            time.sleep(0.2)


def _reachable(path: Path) -> bool:
    try:
        with Client(str(path), family="AF_UNIX", authkey=_authkey(path)) as conn:
            conn.send(("ping", 0, []))
            return conn.recv()[0] == "ok"
    except OSError:
        return False


def serve(path: Path, model_name: str, idle_timeout: float = IDLE_TIMEOUT) -> None:
    from include.embedding import embed_texts, load_model

    load_model(model_name)  # before listening: a reachable service is a warm one
    listener = Listener(str(path), family="AF_UNIX", authkey=_authkey(path))
    os.chmod(path, 0o600)
    path.with_suffix(".pid").write_text(str(os.getpid()))
    last_request = [time.monotonic()]
    busy = threading.Lock()

    def exit_when_idle() -> None:
        while True:
            time.sleep(5)
            with busy:
                if time.monotonic() - last_request[0] > idle_timeout:
                    path.unlink(missing_ok=True)
                    path.with_suffix(".pid").unlink(missing_ok=True)
                    os._exit(0)

    threading.Thread(target=exit_when_idle, daemon=True).start()
    print(f"embedding service ready on {path} (model {model_name}, idle exit after {idle_timeout:.0f} s)", flush=True)
    while True:
        try:
            conn = listener.accept()
        except OSError:
            continue  # a client with the wrong key, or one that went away
        with conn, busy:
            try:
                name, batch_size, texts = conn.recv()
                if name == "ping":
                    conn.send(("ok", None))
                    continue
                vectors = embed_texts(texts, EmbeddingConfig(model_name=name, batch_size=batch_size))
                conn.send(("ok", vectors))
            except Exception as exc:  # noqa: BLE001 - reported to the client, which falls back
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
            last_request[0] = time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve embeddings to task processes over a Unix socket.")
    parser.add_argument("--socket", type=Path, default=socket_path())
    parser.add_argument("--model", default=EmbeddingConfig().model_name)
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT)
    args = parser.parse_args()
    serve(args.socket, args.model, args.idle_timeout)


if __name__ == "__main__":
    main()
