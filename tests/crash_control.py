"""The test side of the crash point in tests/tripwire/crash_points.py: arm it, wait for a write to stop there."""

from __future__ import annotations

import time
from pathlib import Path


class CrashPoint:
    """The pause point of tests/tripwire/crash_points.py: arm it, wait for a write task to stop there."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def arm(self) -> None:
        (self.folder / "armed").touch()

    def wait_for_paused_pid(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            paused = list(self.folder.glob("paused-*"))
            if paused:
                paused[0].unlink()
                return int(paused[0].name.split("-")[1])
            time.sleep(0.2)
        raise AssertionError("no write task reached the crash point")

    def resume(self, pid: int) -> None:
        (self.folder / f"resume-{pid}").touch()
