"""Missing prerequisites: a skip on a developer's machine, a failure under CI (`CI=true`), never quiet."""

from __future__ import annotations

import os

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI, where every test must run."""
    if under_ci():
        pytest.fail(f"{reason}; every test must run under CI=true")
    pytest.skip(reason)
