"""A per-user request budget for the HTTP API: a token bucket per Airflow user, in the api-server process.

`HN_INGEST_API_REQUESTS_PER_MINUTE` (600 by default; 0 turns it off) requests a minute, with bursts of
as many: a client that loops on `/search` gets 429 with `Retry-After` instead of holding the store (on
Milvus Lite, the directory the write tasks need) and the api-server that also serves the tasks' Execution API.
"""

from __future__ import annotations

import math
import os
import threading
import time

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import HTTPException


class TokenBuckets:
    """`per_minute` tokens a minute per key, up to `per_minute` saved; `take` spends one."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._lock = threading.Lock()

    def take(self, key: str, now: float) -> float:
        """0 when `key` may go now (a token is spent); else the seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        rate = self.per_minute / 60
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / rate


BUCKETS = TokenBuckets(int(os.environ.get("HN_INGEST_API_REQUESTS_PER_MINUTE", "600")))


def per_user_limit(user: GetUserDep) -> None:
    """A FastAPI dependency: 429 with `Retry-After` once the user's budget is spent."""
    wait = BUCKETS.take(str(user.get_id() or user.get_name()), time.monotonic())
    if wait:
        raise HTTPException(429, f"too many requests: at most {BUCKETS.per_minute} a minute per user; "
                                 f"try again in {math.ceil(wait)} s", headers={"Retry-After": str(math.ceil(wait))})
