"""What native code prints on fd 2 while Milvus Lite is open: FAISS's small-training-set line at INFO, the rest untouched."""

from __future__ import annotations

import subprocess
import sys

from include.config import PROJECT_ROOT

SCRIPT = """
import logging, os, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
from include.store.native_stderr import stderr_to_logging
with stderr_to_logging():
    os.write(2, b"WARNING clustering 354 points to 128 centroids: please provide at least 4992 training points\\n")
    os.write(2, b"some other native message\\n")
    # A log handler that writes to fd 2 inside the block (a task whose supervisor is gone): 1.3 MB
    # through the pipe must neither loop back into logging nor fill the pipe and hang.
    for i in range(20000):
        logging.getLogger("task").warning("line %d %s", i, "y" * 50)
print("finished", file=sys.stderr)
"""


def test_faiss_training_line_becomes_info_other_lines_pass_through_and_nothing_hangs():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"})
    lines = done.stderr.splitlines()
    assert done.returncode == 0 and lines[-1] == "finished", done.stderr[-2000:]
    faiss = [line for line in lines if "WARNING clustering" in line]
    assert len(faiss) == 1 and faiss[0].startswith("INFO include.store.native_stderr: Milvus Lite trained"), faiss
    assert "some other native message" in lines  # untouched, not re-logged
    assert sum(line.startswith("WARNING task: line ") for line in lines) == 20000
