"""Per-host request limits shared by every worker.

Each host (scheme, name and port: a robots.txt origin) gets at most `concurrency` requests in flight
and one request start per `1 / rate` seconds (or its robots.txt `Crawl-delay`, when stricter), and no
request at all while it is paused after a 429/503. The state of a host is a small record updated
atomically by whoever asks:

- `FileHostStates`: a JSON file per host under an `fcntl` lock, for every process of one machine
  (`airflow dags test`, the LocalExecutor, the Celery workers of one host);
- `RedisHostStates`: a Redis key per host updated with WATCH/MULTI, for workers on many machines
  (`HN_INGEST_REDIS_URL`; the Celery broker is a Redis every worker already reaches).

A lease expires on its own (`lease_seconds`), so a worker killed mid-request frees its slot.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from include.config import PolitenessConfig, data_dir


@dataclass
class HostState:
    leases: dict[str, float] = field(default_factory=dict)  # token → expiry (Unix seconds)
    next_start: float = 0.0  # no request starts before this
    paused_until: float = 0.0  # set by a 429/503


@dataclass(frozen=True)
class Lease:
    host: str
    token: str


@dataclass(frozen=True)
class Wait:
    seconds: float
    paused: bool  # the host asked us to slow down (not just our own rate or concurrency)


Update = Callable[[HostState, float], Any]  # mutates the state in place, returns the caller's answer


class HostStates(Protocol):
    def update(self, host: str, change: Update) -> Any: ...


class HostGate:
    def __init__(self, states: HostStates, concurrency: int, rate: float, lease_seconds: float) -> None:
        self.states = states
        self.concurrency = concurrency  # 0: no limit
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.lease_seconds = lease_seconds

    def try_acquire(self, host: str, min_interval: float = 0.0) -> Lease | Wait:
        """A lease to send one request to `host` now, or how long to wait before asking again."""

        def take(state: HostState, now: float) -> Lease | Wait:
            state.leases = {t: expiry for t, expiry in state.leases.items() if expiry > now}
            if state.paused_until > now:
                return Wait(state.paused_until - now, paused=True)
            if state.next_start > now:
                return Wait(state.next_start - now, paused=False)
            if self.concurrency and len(state.leases) >= self.concurrency:
                return Wait(0.1, paused=False)  # a release can come any moment, from any worker
            token = uuid.uuid4().hex
            state.leases[token] = now + self.lease_seconds
            state.next_start = now + max(self.interval, min_interval)
            return Lease(host, token)

        return self.states.update(host, take)

    def mark_sent(self, lease: Lease, min_interval: float = 0.0) -> None:
        """The request is leaving now: the next start is at least one interval after this moment.

        The grant and the send can be far apart when the machine is busy (a thread waiting for a CPU),
        and the site sees the sends: counting from the grant alone let two sends come 0.8 s apart at
        1 request/s in the politeness bench."""

        def stamp(state: HostState, now: float) -> None:
            state.next_start = max(state.next_start, now + max(self.interval, min_interval))

        self.states.update(lease.host, stamp)

    def release(self, lease: Lease) -> None:
        def give_back(state: HostState, now: float) -> None:
            state.leases.pop(lease.token, None)

        self.states.update(lease.host, give_back)

    def pause(self, host: str, seconds: float) -> None:
        """No request to `host` for `seconds` (a 429/503 asked for it), from any worker."""

        def hold(state: HostState, now: float) -> None:
            state.paused_until = max(state.paused_until, now + seconds)

        self.states.update(host, hold)


def request_budget(config: PolitenessConfig, name: str, rate: float) -> Callable[[float], bool]:
    """A rate shared by every worker for one API (`name`), as a function that waits up to the given
    seconds for a turn and says whether it got one: for Algolia's per-address request budget."""
    gate = HostGate(_states(config), concurrency=0, rate=rate, lease_seconds=60.0)

    def take_turn(max_wait: float) -> bool:
        deadline = time.monotonic() + max_wait
        while True:
            answer = gate.try_acquire(name)
            if isinstance(answer, Lease):
                gate.release(answer)  # a turn, not a slot: only the start rate is limited
                return True
            if time.monotonic() + answer.seconds > deadline:
                return False
            time.sleep(answer.seconds)

    return take_turn


def prune_idle_hosts() -> int:
    """Forget the sites no one asked for an hour (the Redis keys expire by themselves)."""
    directory = data_dir() / "host-limits"
    return FileHostStates(directory).prune() if directory.is_dir() else 0


def host_gate(config: PolitenessConfig, lease_seconds: float) -> HostGate:
    """The gate the settings ask for: Redis-backed when `HN_INGEST_REDIS_URL` is set, else this machine's files."""
    return HostGate(_states(config), config.host_concurrency, config.host_rate, lease_seconds)


def _states(config: PolitenessConfig) -> HostStates:
    if config.redis_url:
        return RedisHostStates(config.redis_url)
    return FileHostStates(data_dir() / "host-limits")


def _safe_name(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", host)


class FileHostStates:
    IDLE_AFTER = 3600.0  # a site not asked for this long is forgotten (its file removed by `prune`)

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def prune(self, now: float | None = None) -> int:
        """Remove the files of sites idle for an hour (one file per site ever asked would pile up).

        Under the file's lock, so no update is lost unless a process opened the file just before the
        unlink and waits on its lock: that one request is then counted in a forgotten file."""
        now = time.time() if now is None else now
        removed = 0
        for path in self.directory.glob("*.json"):
            try:
                with path.open("r", encoding="utf-8") as file:
                    fcntl.flock(file, fcntl.LOCK_EX)
                    if now - os.fstat(file.fileno()).st_mtime > self.IDLE_AFTER:
                        path.unlink()
                        removed += 1
            except FileNotFoundError:
                continue
        return removed

    def update(self, host: str, change: Update) -> Any:
        path = self.directory / f"{_safe_name(host)}.json"
        with path.open("a+", encoding="utf-8") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # released when the file closes
            file.seek(0)
            raw = file.read()
            state = HostState(**json.loads(raw)) if raw.strip() else HostState()
            answer = change(state, time.time())
            file.seek(0)
            file.truncate()
            file.write(json.dumps(asdict(state)))
        return answer


class RedisHostStates:
    KEY_TTL = 3600  # a host not asked for an hour starts afresh

    def __init__(self, url: str) -> None:
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def update(self, host: str, change: Update) -> Any:
        import redis

        key = f"hn_ingest:host:{_safe_name(host)}"
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    state = HostState(**json.loads(raw)) if raw else HostState()
                    answer = change(state, time.time())
                    pipe.multi()
                    pipe.set(key, json.dumps(asdict(state)), ex=self.KEY_TTL)
                    pipe.execute()
                    return answer
                except redis.WatchError:
                    continue  # another worker changed this host meanwhile: read it again
