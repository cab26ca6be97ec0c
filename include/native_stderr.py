"""Route what native libraries print on file descriptor 2 into Python logging, at its real level.

Milvus Lite builds a segment's IVF index with FAISS when the segment is flushed (when the client is
closed, after a write), and FAISS prints `WARNING clustering 354 points to 128 centroids: please
provide at least 4992 training points` straight to stderr, which a task log shows as an ERROR. For
Milvus Lite it is expected: each write's segment trains its own small index (search quality is
unaffected at this size: every list is probed over few vectors). Those lines become INFO; anything
else a native library prints stays visible as a WARNING.
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


def route_line(line: str) -> None:
    if _SMALL_TRAINING_SET.match(line):
        log.info("Milvus Lite trained a segment's IVF index on a small batch (expected): %s", line)
    elif line.strip():
        log.warning("native library: %s", line)


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
                route_line(line.rstrip("\n"))

    reader = threading.Thread(target=pump, name="native-stderr", daemon=True)
    reader.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # drops the pipe's last write end: the reader sees end of file
        os.close(saved)
        reader.join(timeout=5)
