"""A warm embedding process shared by the task processes of one host.

Under the scheduler every task instance is a new process, and importing torch and
sentence-transformers costs ~5 s per process: more than embedding a micro-batch. The first embed task
on a host starts this service in the background (its own session, so it outlives the task); later
tasks send it their texts over a Unix socket and get the vectors back. It exits after `idle_timeout`
seconds without a request. If it cannot be reached or started, the task embeds in its own process:
the service only ever saves time.

Everything the service needs (socket, key, start lock, pid, log) lives in a per-host runtime directory
(`HN_INGEST_RUNTIME_DIR`, default `$XDG_RUNTIME_DIR/hn-ingest` or `/tmp/hn-ingest-<uid>`), never in
the data directory, which several hosts may mount: a Unix socket, an flock and a pid only mean
something on the host that made them.

    python -m include.embed.service   # normally started on demand by the first embed task
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import secrets
import stat
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path

import numpy as np

from include.config import PROJECT_ROOT, EmbeddingConfig

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # a cold start (imports, model load) takes ~10 s on 2 cores
IDLE_TIMEOUT = float(os.environ.get("HN_INGEST_EMBEDDING_SERVICE_IDLE", 900))


def runtime_dir() -> Path:
    """The per-host directory of the service, created owner-only; refused if anyone else could use it."""
    configured = os.environ.get("HN_INGEST_RUNTIME_DIR", "").strip()
    if configured:
        path = Path(configured)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "hn-ingest"
    else:
        path = Path(tempfile.gettempdir()) / f"hn-ingest-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        # In a shared /tmp another user could have made it first: the socket carries pickled data.
        raise PermissionError(f"{path} must be a directory owned by uid {os.getuid()} with mode 0700")
    return path


def socket_path() -> Path:
    return runtime_dir() / "embedding.sock"


def _authkey(folder: Path) -> bytes:
    """A per-host secret, readable by its owner only: the socket carries pickled data."""
    key_file = folder / "embedding.key"
    if not key_file.exists():
        tmp = folder / f".embedding.key.{os.getpid()}"
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


# Model batches per request of a background embed: a live request waits at most this long (~2-3 s on 2 cores).
BACKGROUND_BATCHES = 1


def embed(texts: list[str], config: EmbeddingConfig = EmbeddingConfig(), background: bool = False) -> np.ndarray:
    """Embed through the warm service (started on demand), or in this process when it is off or fails.

    `background` (a reindex): the texts go a few model batches per request, so that the service, which
    answers one request at a time, takes a live run's request in between instead of after them all.
    `HN_INGEST_EMBEDDING_SERVICE=off` embeds in the task process.
    """
    if texts and os.environ.get("HN_INGEST_EMBEDDING_SERVICE", "on").lower() != "off":
        try:
            if background:
                # Longest first, as the model orders one call's texts: requests of similar lengths pad
                # little (in arrival order they were ~20 % slower).
                order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
                step = BACKGROUND_BATCHES * config.batch_size
                parts = [embed_remote([texts[i] for i in order[start : start + step]], config)
                         for start in range(0, len(order), step)]
                vectors = np.empty_like(parts[0], shape=(len(texts), parts[0].shape[1]))
                vectors[order] = np.concatenate(parts)
                return vectors
            return embed_remote(texts, config)
        except (OSError, EOFError) as exc:
            log.warning("embedding service unavailable (%s): embedding in this process", exc)
    from include.embed.model import embed_texts

    return embed_texts(texts, config)


def embed_remote(texts: list[str], config: EmbeddingConfig) -> np.ndarray:
    """Embed through the service, starting it when it is not running. Raises OSError when impossible."""
    folder = runtime_dir()
    try:
        return _ask(folder, (config.model_name, config.batch_size, texts))
    except (FileNotFoundError, ConnectionRefusedError):
        _start(folder, config)
        return _ask(folder, (config.model_name, config.batch_size, texts))


def warm_up_in_background(config: EmbeddingConfig = EmbeddingConfig()) -> bool:
    """Begin starting the service without waiting, when it is not running: a run that will embed soon
    lets the model load (~5-10 s) while its pages are fetched and partitioned. True if a start began.

    A helper process does the usual locked start; an embed task that comes meanwhile waits on the same
    lock and then finds the service ready, so no second service is started.
    """
    if os.environ.get("HN_INGEST_EMBEDDING_SERVICE", "on").lower() == "off":
        return False
    folder = runtime_dir()
    if _reachable(folder):
        return False
    subprocess.Popen(
        [sys.executable, "-m", "include.embed.service", "--runtime-dir", str(folder), "--model", config.model_name,
         "--start-only"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env=_service_environment())
    return True


def _service_environment() -> dict[str, str]:
    return {**os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}


def _ask(folder: Path, request: tuple):
    with Client(str(folder / "embedding.sock"), family="AF_UNIX", authkey=_authkey(folder)) as conn:
        conn.send(request)
        status, payload = conn.recv()
    if status != "ok":
        raise OSError(f"embedding service failed: {payload}")
    return payload


def _reachable(folder: Path) -> bool:
    try:
        _ask(folder, ("ping", 0, []))
        return True
    except (OSError, EOFError):
        return False


def _start(folder: Path, config: EmbeddingConfig) -> None:
    """Start the service unless another process of this host just did; fail fast if it dies starting."""
    log_path = folder / "embedding.log"
    with open(folder / "embedding.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time on this host; the others find it running
        if _reachable(folder):
            return
        # Nobody answers under the lock: a socket file left here is from a service that died.
        (folder / "embedding.sock").unlink(missing_ok=True)
        with open(log_path, "ab") as log_file:
            service = subprocess.Popen(
                [sys.executable, "-m", "include.embed.service", "--runtime-dir", str(folder),
                 "--model", config.model_name],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                env=_service_environment(),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _reachable(folder):
            if service.poll() is not None:
                raise OSError(f"embedding service exited with code {service.returncode} while starting: "
                              f"{_tail(log_path)}")
            if time.monotonic() > deadline:
                service.kill()
                raise OSError(f"embedding service did not start in {START_TIMEOUT:.0f} s (see {log_path})")
            time.sleep(0.2)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return f"no log at {path}"


def serve(folder: Path, model_name: str, idle_timeout: float = IDLE_TIMEOUT) -> None:
    from include.embed.model import embed_texts, load_model

    load_model(model_name)  # before listening: a reachable service is a warm one
    path = folder / "embedding.sock"
    listener = Listener(str(path), family="AF_UNIX", authkey=_authkey(folder))
    os.chmod(path, 0o600)
    own_socket = path.stat().st_ino  # on exit, remove the socket only if it is still this one
    (folder / "embedding.pid").write_text(str(os.getpid()))
    last_request = [time.monotonic()]
    busy = threading.Lock()

    def exit_when_idle() -> None:
        while True:
            time.sleep(5)
            with busy:
                if time.monotonic() - last_request[0] > idle_timeout:
                    _remove_if_ours(path, own_socket)
                    os._exit(0)

    threading.Thread(target=exit_when_idle, daemon=True).start()
    print(f"embedding service {os.getpid()} ready on {path} (model {model_name}, idle exit after {idle_timeout:.0f} s)",
          flush=True)
    while True:
        try:
            conn = listener.accept()
        except (OSError, EOFError, AuthenticationError):
            continue  # a client with the wrong key, or one that went away
        with conn, busy:
            try:
                name, batch_size, texts = conn.recv()
                if name == "ping":
                    conn.send(("ok", None))
                    continue
                try:
                    reply = ("ok", embed_texts(texts, EmbeddingConfig(model_name=name, batch_size=batch_size)))
                except Exception as exc:  # noqa: BLE001 - reported to the client, which falls back
                    reply = ("error", f"{type(exc).__name__}: {exc}")
                conn.send(reply)
            except (OSError, EOFError) as exc:
                # The client died or hung up mid-request: its problem, not the service's.
                print(f"client went away: {type(exc).__name__}: {exc}", flush=True)
            finally:
                last_request[0] = time.monotonic()


def _remove_if_ours(path: Path, inode: int) -> None:
    try:
        if path.stat().st_ino == inode:
            path.unlink()
    except FileNotFoundError:
        pass
    pid_file = path.with_name("embedding.pid")
    try:
        if pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()
    except FileNotFoundError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve embeddings to the task processes of this host.")
    parser.add_argument("--runtime-dir", type=Path, default=None, help="default: HN_INGEST_RUNTIME_DIR or per user")
    parser.add_argument("--model", default=EmbeddingConfig().model_name)
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT)
    parser.add_argument("--start-only", action="store_true",
                        help="start the service (if it is not running) and return once it answers")
    args = parser.parse_args()
    folder = args.runtime_dir or runtime_dir()
    if args.start_only:
        _start(folder, EmbeddingConfig(model_name=args.model))
    else:
        serve(folder, args.model, args.idle_timeout)


if __name__ == "__main__":
    main()
