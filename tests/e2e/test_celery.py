"""hn_ingest on the CeleryExecutor with two workers that share no disk (tests/celery_stack.py).

Real Postgres (metadata DB, Celery results) and Redis (broker) on loopback; api-server, scheduler,
dag-processor and two Celery workers, each worker in its own mount, UTS and PID namespace with its own
data directory (the other's is hidden) and its own embedding service. The workers share only what a
team's hosts would share: the staging base (`HN_INGEST_STAGING_URL`) and a real Milvus server.

Act 1, scheduled runs ingest the newest stories; act 2, a backfill ingests a past window; act 3, a
worker is SIGKILLed while its write is paused between the chunk rows and the story states. Then the
store must hold exactly the rows of a clean `airflow dags test` of the same stories on the laptop
default (Milvus Lite, no Celery), and no task may have needed a second try except the killed one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from include.config import PolitenessConfig
from tests.airflow_cli import AirflowEnv
from tests.celery_stack import CeleryStack
from tests.crash_control import CrashPoint
from tests.invariants import assert_every_story_accounted_for, assert_no_duplicates, assert_stories_whole, chunk_rows
from tests.milvus_server import drop_all_collections
from tests.replay_server import INTERVAL, ReplayServer, load_corpus, pick_window
from tests.services import Postgres, Redis, ensure_debian_packages

pytestmark = pytest.mark.e2e

NEWEST = 4
LATER = 6  # stories released for act 3
NOT_YET = float("inf")


@pytest.fixture(scope="module")
def celery(require_corpus, milvus_server, tmp_path_factory):
    drop_all_collections(milvus_server.uri)
    ensure_debian_packages("postgresql", "redis-server")
    tmp = tmp_path_factory.mktemp("celery")
    replay = ReplayServer()
    load_corpus(replay, url_stories=16, text_posts=1, dead=1, deleted=0)
    stories = sorted(replay.live_stories(), key=lambda s: -s["id"])
    later = {s["id"] for s in stories[:LATER]}
    newest = {s["id"] for s in stories[LATER:LATER + NEWEST]}
    for story_id in later:
        replay.release_at[story_id] = NOT_YET
    replay.newstories_limit = NEWEST
    start, end = pick_window([s for s in stories if s["id"] not in later | newest])
    in_window = {s["id"] for s in stories if start <= s["time"] < end and s["id"] not in later | newest}
    staging = tmp / "shared-staging"
    point = CrashPoint(tmp / "crash-points")
    workers = {"worker-1": tmp / "hosts" / "w1", "worker-2": tmp / "hosts" / "w2"}
    seen: dict = {"newest": newest, "in_window": in_window, "later": later, "workers": workers}
    with replay, Postgres(tmp / "pg") as postgres, Redis(tmp / "redis") as redis:
        env = AirflowEnv(tmp / "airflow", tmp / "scheduler-host-data", {
            **replay.connection_env(),
            "AIRFLOW_CONN_MILVUS_DEFAULT": f'{{"conn_type": "milvus", "host": "{milvus_server.uri}"}}',
            "HN_INGEST_STAGING_URL": staging.as_uri(),
            "HN_TEST_CRASH_POINTS": str(point.folder),
            "HN_INGEST_REDIS_URL": redis.url.rsplit("/", 1)[0] + "/1",  # per-site limits across the workers
        })
        stack = CeleryStack(env, postgres, redis, workers)
        env.migrate()
        started = time.monotonic()
        with stack:
            stored = lambda: {r["story_id"]: r["status"] for r in env.status()["story_rows"]}  # noqa: E731
            # Act 1: the schedule.
            stack.wait_for(lambda: newest <= set(stored()), 420, "scheduled runs to ingest the newest stories")
            seen["act1_s"] = time.monotonic() - started
            # Act 2: a backfill of a past window, runs overlapping.
            fmt = lambda t: datetime.fromtimestamp(t, UTC).isoformat()  # noqa: E731
            env.airflow("backfill", "create", "--dag-id", "hn_ingest", "--from-date", fmt(start),
                        "--to-date", fmt(end - INTERVAL), "--max-active-runs", "3")
            expected_runs = (end - start) // INTERVAL
            backfill_started = time.monotonic()

            def backfill_done():
                done = [r for r in stack.runs() if r["run_id"].startswith("backfill__")
                        and r["state"] in ("success", "failed")]
                return len(done) >= expected_runs and done

            seen["backfill_runs"] = stack.wait_for(backfill_done, 600, f"{expected_runs} backfill runs")
            seen["backfill_s"] = time.monotonic() - backfill_started
            seen["before_kill"] = env.status(chunks=True)
            # Act 3: new stories; the worker that writes them dies between chunk rows and states.
            point.arm()
            replay.newstories_limit = NEWEST + LATER
            for story_id in later:
                replay.release_at[story_id] = 0.0
            point.wait_for_paused_pid(300)
            writing = stack.wait_for(lambda: [ti for ti in stack.task_instances("hn_ingest")
                                              if ti["task_id"] == "write_batch" and ti["state"] == "running"],
                                     60, "the paused write task")
            seen["killed"], killed_run = writing[0]["hostname"], writing[0]["run_id"]
            stack.kill(seen["killed"])
            kill_time = time.monotonic()
            seen["killed_run"] = stack.wait_for(
                lambda: [r for r in stack.runs() if r["run_id"] == killed_run and r["state"] in ("success", "failed")],
                600, "the run whose worker was killed")
            seen["recovery_s"] = time.monotonic() - kill_time
            seen["task_instances"] = {}
            for ti in stack.task_instances("hn_ingest"):
                seen["task_instances"].setdefault(ti["run_id"], []).append(ti)
            seen["runs"] = stack.runs()
            seen["final"] = env.status(chunks=True)
            seen["total_s"] = time.monotonic() - started
            seen["staging_left"] = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        seen["crawl"] = {"peak_concurrency": replay.peak_concurrency(0), "min_gap": replay.min_gap(0),
                         "requests": len(replay.crawl_visits(0))}
        # The same stories, one clean `airflow dags test` on the laptop default (Milvus Lite, no Celery).
        replay.newstories_limit = 500
        for story_id in {s["id"] for s in stories} - (newest | in_window | later):
            replay.release_at[story_id] = NOT_YET
        clean = AirflowEnv(tmp / "clean-airflow", tmp / "clean-data", replay.connection_env())
        clean.migrate()
        run = clean.dags_test()
        assert run.succeeded, run.log[-3000:]
        seen["clean"] = clean.status(chunks=True)
    print(f"celery: schedule {seen['act1_s']:.0f} s, backfill {seen['backfill_s']:.0f} s, "
          f"recovery after killing {seen['killed']} {seen['recovery_s']:.0f} s, total {seen['total_s']:.0f} s")
    return seen


def test_tasks_ran_on_both_workers(celery):
    hosts = {ti["hostname"] for tis in celery["task_instances"].values() for ti in tis if ti["hostname"]}
    assert {"worker-1", "worker-2"} <= hosts, hosts


def test_no_task_needed_a_second_try_except_the_killed_write(celery):
    retried = [(run_id, ti["task_id"], ti["map_index"], ti["try_number"])
               for run_id, tis in celery["task_instances"].items() for ti in tis if ti["try_number"] > 1]
    killed = [r for r in retried if r[0] == celery["killed_run"][0]["run_id"] and r[1] == "write_batch"]
    assert retried == killed, retried
    # The schedule goes on meanwhile: the newest run may still be queued or running at the snapshot.
    assert all(r["state"] in ("success", "running", "queued") for r in celery["runs"]), celery["runs"]


def test_the_backfill_succeeded_run_by_run(celery):
    assert all(r["state"] == "success" for r in celery["backfill_runs"]), celery["backfill_runs"]


def test_killing_a_worker_mid_write_loses_and_duplicates_nothing(celery):
    assert celery["killed_run"][0]["state"] == "success"
    final = celery["final"]
    assert_no_duplicates(final)
    assert_stories_whole(final)
    assert_every_story_accounted_for(final, celery["newest"] | celery["in_window"] | celery["later"])


def test_the_store_equals_a_clean_run_of_the_same_stories(celery):
    ingested = {r["story_id"] for r in celery["final"]["story_rows"] if r["status"] == "ingested"}
    assert celery["newest"] | celery["in_window"] <= ingested
    assert chunk_rows(celery["final"]) == chunk_rows(celery["clean"])


def test_the_per_site_limits_hold_across_workers_through_redis(celery):
    crawl, limits = celery["crawl"], PolitenessConfig()
    print(f"celery crawl of one site: {crawl}")
    assert crawl["requests"] >= 10
    assert crawl["peak_concurrency"] <= limits.host_concurrency
    assert crawl["min_gap"] >= 1 / limits.host_rate - 0.05
    for folder in celery["workers"].values():  # kept in Redis, not in files a worker alone sees
        assert not (folder / "host-limits").exists(), folder


def test_staging_is_cleaned_from_the_shared_base_and_never_on_a_worker_disk(celery):
    # Every run's batch files are gone; what stays is the shared robots.txt cache, kept on purpose.
    left = celery["staging_left"]
    assert [p for p in left if not p.startswith("robots-cache/")] == [], left
    assert [p for p in left if p.startswith("robots-cache/")]  # the workers shared it through the base
    for folder in celery["workers"].values():
        assert not list(folder.rglob("batch-*")), folder
