"""A pause point for crash tests, loaded by sitecustomize when HN_TEST_CRASH_POINTS names a folder.

A write task stops between its chunk rows and its story states, the worst moment to die, when the
test has armed the point (created `<folder>/armed`): it renames `armed` to `paused-<pid>` (so only
one process takes it) and waits there until the test kills it with SIGKILL or lets it go on
(`<folder>/resume-<pid>`). The kill itself is real; only the timing is arranged.
"""

import importlib.abc
import importlib.machinery
import os
import sys
import time
from pathlib import Path

TARGET = "include.store.ledger"


def install(folder: str) -> None:
    sys.meta_path.insert(0, _PatchOnImport(Path(folder)))


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _pause_before_states(module.StoryLedger, self.folder)

        spec.loader.exec_module = exec_module
        return spec


def _pause_before_states(ledger_class, folder: Path) -> None:
    write_states = ledger_class.write_states

    def paused(self, *args, **kwargs):
        try:
            os.rename(folder / "armed", folder / f"paused-{os.getpid()}")
        except FileNotFoundError:
            return write_states(self, *args, **kwargs)
        resume = folder / f"resume-{os.getpid()}"
        deadline = time.monotonic() + 3600
        while not resume.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        return write_states(self, *args, **kwargs)

    ledger_class.write_states = paused
