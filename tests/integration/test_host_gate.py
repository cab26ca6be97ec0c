"""The per-host gate on both of its shared states: files on this machine and a real Redis server.

Several processes hammer one host through the gate at once; every grant is logged with its time, and
the log must show at most K leases held at once and starts at least 1/R apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from include.config import PROJECT_ROOT
from include.crawl.host_gate import FileHostStates, HostGate, Lease, RedisHostStates, Wait
from tests.services import Redis, ensure_debian_packages

HOST = "https://example.org:443"

# One worker process: takes `requests` leases for HOST as fast as the gate allows, holds each 0.15 s.
WORKER = """
import json, sys, time
from include.crawl.host_gate import FileHostStates, HostGate, Lease, RedisHostStates
kind, where, k, rate, requests = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
states = FileHostStates(__import__("pathlib").Path(where)) if kind == "file" else RedisHostStates(where)
gate = HostGate(states, k, rate, lease_seconds=30)
for _ in range(requests):
    while not isinstance(lease := gate.try_acquire("https://example.org:443"), Lease):
        time.sleep(min(lease.seconds, 0.02))
    start = time.time()
    time.sleep(0.15)
    end = time.time()
    gate.release(lease)
    print(json.dumps([start, end]), flush=True)
"""


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    ensure_debian_packages("redis-server")
    with Redis(tmp_path_factory.mktemp("redis")) as redis:
        yield redis.url


def hammer(kind: str, where: str, k: int, rate: float, workers: int = 4, requests: int = 6) -> list[tuple[float, float]]:
    processes = [subprocess.Popen([sys.executable, "-c", WORKER, kind, where, str(k), str(rate), str(requests)],
                                  cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True) for _ in range(workers)]
    spans = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        spans += [tuple(json.loads(line)) for line in out.splitlines()]
    return sorted(spans)


def peak_overlap(spans) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    peak = current = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_k_concurrent_and_r_per_second_hold_across_processes(kind, tmp_path, request):
    where = str(tmp_path / "hosts") if kind == "file" else request.getfixturevalue("redis_url")
    spans = hammer(kind, where, k=2, rate=10.0)
    starts = [s for s, _ in spans]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    print(f"{kind}: {len(spans)} requests, peak concurrency {peak_overlap(spans)}, min gap {min(gaps):.3f} s")
    assert len(spans) == 24
    assert peak_overlap(spans) == 2  # the limit is reached (the workers want more) and never passed
    assert min(gaps) >= 0.1 - 0.005  # 10 per second: starts at least 0.1 s apart (clock resolution aside)
    # Without the gate the same workers overlap freely: the check above can fail.
    free = hammer(kind, where, k=0, rate=0.0)
    assert peak_overlap(free) > 2


def test_a_pause_holds_every_request_and_a_dead_workers_lease_expires(tmp_path):
    gate = HostGate(FileHostStates(tmp_path), concurrency=1, rate=0, lease_seconds=0.5)
    lease = gate.try_acquire(HOST)
    assert isinstance(lease, Lease)
    held = gate.try_acquire(HOST)
    assert isinstance(held, Wait) and not held.paused  # the one slot is taken
    time.sleep(0.6)  # the holder died without releasing: its lease runs out
    again = gate.try_acquire(HOST)
    assert isinstance(again, Lease)
    gate.release(again)
    gate.pause(HOST, 5)
    paused = gate.try_acquire(HOST)
    assert isinstance(paused, Wait) and paused.paused and 4 < paused.seconds <= 5
    assert isinstance(gate.try_acquire("https://other.example:443"), Lease)  # other hosts go on


def test_crawl_delay_stricter_than_the_rate_wins(tmp_path):
    gate = HostGate(FileHostStates(tmp_path), concurrency=0, rate=100, lease_seconds=30)
    assert isinstance(gate.try_acquire(HOST, min_interval=2.0), Lease)
    wait = gate.try_acquire(HOST, min_interval=2.0)
    assert isinstance(wait, Wait) and 1.9 < wait.seconds <= 2.0


def test_redis_states_are_shared(redis_url):
    one = HostGate(RedisHostStates(redis_url), concurrency=1, rate=0, lease_seconds=30)
    two = HostGate(RedisHostStates(redis_url), concurrency=1, rate=0, lease_seconds=30)
    lease = one.try_acquire("https://shared.example:443")
    assert isinstance(lease, Lease)
    assert isinstance(two.try_acquire("https://shared.example:443"), Wait)
    one.release(lease)
    assert isinstance(two.try_acquire("https://shared.example:443"), Lease)


def test_sites_idle_for_an_hour_are_forgotten(tmp_path):
    states = FileHostStates(tmp_path)
    gate = HostGate(states, concurrency=1, rate=1, lease_seconds=30)
    for host in ("https://old.example:443", "https://new.example:443"):
        gate.release(gate.try_acquire(host))
    old = tmp_path / "https_old.example_443.json"
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert states.prune() == 1
    assert not old.exists() and (tmp_path / "https_new.example_443.json").exists()


def test_mark_sent_counts_the_interval_from_the_send(tmp_path):
    gate = HostGate(FileHostStates(tmp_path), concurrency=0, rate=2, lease_seconds=30)
    lease = gate.try_acquire(HOST)
    time.sleep(0.3)  # a busy machine: the request leaves well after its grant
    gate.mark_sent(lease)
    wait = gate.try_acquire(HOST)
    assert isinstance(wait, Wait) and wait.seconds > 0.45  # 0.5 s from the send, not 0.2 from the grant
