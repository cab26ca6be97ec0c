"""Route what native libraries print on file descriptor 2 into Python logging, at its real level.

Milvus Lite builds a segment's IVF index with FAISS when the segment is flushed (when the client is
closed, after a write), and FAISS prints `WARNING clustering 354 points to 128 centroids: please
provide at least 4992 training points` straight to stderr, which a task log shows as an ERROR. For
Milvus Lite it is expected: each write's segment trains its own small index (search quality is
unaffected at this size: every list is probed over few vectors). Those lines become INFO records;
every other line goes on to the real stderr untouched, never through logging: a log handler that
writes to stderr (a task whose supervisor is gone) would otherwise feed its own output back into
the pipe until it fills and the process hangs.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
_SMALL_TRAINING_SET = re.compile(r"^WARNING clustering \d+ points to \d+ centroids")


def route_line(line: str, stderr_fd: int) -> None:
    if _SMALL_TRAINING_SET.match(line):
        log.info("Milvus Lite trained a segment's IVF index on a small batch (expected): %s", line)
    else:
        os.write(stderr_fd, (line + "\n").encode(errors="replace"))


@contextmanager
def stderr_to_logging() -> Iterator[None]:
    """Within the block, lines written to fd 2 (by any thread, native code included) go to `route_line`."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "r", errors="replace") as lines:
            for line in lines:
                try:
                    route_line(line.rstrip("\n"), saved)
                except Exception:  # noqa: BLE001 - keep draining: a full pipe would block every writer
                    pass

    reader = threading.Thread(target=pump, name="native-stderr", daemon=True)
    reader.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # drops the pipe's last write end: the reader sees end of file
        reader.join(timeout=30)  # draining takes well under a second; a loaded machine may need more
        if not reader.is_alive():  # it may still write to `saved`; a stuck reader keeps it (one fd)
            os.close(saved)
