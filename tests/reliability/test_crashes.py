"""Crashes under the real scheduler (LocalExecutor): a write task killed with SIGKILL between its chunk
rows and its story states, then its run cleared and re-run; the scheduler killed in the middle of a
run and restarted; two manual triggers (one a full reindex) racing the schedule.

One stack lives through the three acts; the replay releases a new group of stories for each. At the
end the store must hold every story once, whole, with exactly the rows of a clean run.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.airflow_cli import AirflowEnv, AirflowStack
from tests.crash_control import CrashPoint
from tests.invariants import assert_every_story_accounted_for, assert_no_duplicates, assert_stories_whole, chunk_rows
from tests.replay_server import ReplayServer, load_corpus

pytestmark = pytest.mark.e2e

NOT_YET = float("inf")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True




def ingested(env: AirflowEnv) -> set[int]:
    return {r["story_id"] for r in env.status()["story_rows"] if r["status"] == "ingested"}


@pytest.fixture(scope="module")
def crashes(require_corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crashes")
    replay = ReplayServer()
    groups = [sorted(load_corpus(replay, url_stories=12, text_posts=0, dead=0, deleted=0))[k::3] for k in range(3)]
    for story_id in groups[1] + groups[2]:
        replay.release_at[story_id] = NOT_YET
    point = CrashPoint(tmp / "crash-points")
    env = AirflowEnv(tmp / "airflow", tmp / "data", {
        **replay.connection_env(),
        "HN_TEST_CRASH_POINTS": str(point.folder),
    })
    env.migrate()
    seen: dict = {}
    started = time.monotonic()
    with replay:
        with AirflowStack(env) as stack:
            # Act 1: the first scheduled run's write dies between chunk rows and states; the run is cleared.
            point.arm()
            pid = point.wait_for_paused_pid(300)
            os.kill(pid, signal.SIGKILL)
            running = stack.wait_for(lambda: [r for r in stack.runs() if r["state"] == "running"], 60, "the running run")
            env.airflow("tasks", "clear", "hn_ingest", "-y", "-s", running[0]["logical_date"],
                        "-e", running[0]["logical_date"])
            seen["act1"] = stack.wait_for(lambda: (s := ingested(env)) >= set(groups[0]) and s, 300, "act 1 stories")
            seen["act1_run"] = stack.wait_for(
                lambda: [r for r in stack.runs() if r["run_id"] == running[0]["run_id"] and r["state"] == "success"],
                120, "the cleared run to succeed")
            seen["after_act1"] = env.status(chunks=True)
            print(f"act 1 done after {time.monotonic() - started:.0f} s")

            # Act 2: new stories; the scheduler (and every task it started) is killed while a write is paused.
            point.arm()
            for story_id in groups[1]:
                replay.release_at[story_id] = 0.0
            pid = point.wait_for_paused_pid(120)
            interrupted = [r["run_id"] for r in stack.runs() if r["state"] == "running"]
            stack.kill("scheduler")
            # Airflow starts each task process in its own session: it outlives its scheduler and
            # supervisor, an orphan that finishes its write while the new scheduler re-runs the task.
            seen["task_outlived_scheduler"] = alive(pid)
            if seen["task_outlived_scheduler"]:
                point.resume(pid)
            stack.start("scheduler")
            restarted = time.monotonic()
            seen["act2_run"] = stack.wait_for(
                lambda: [r for r in stack.runs() if r["run_id"] in interrupted and r["state"] == "success"],
                400, "the interrupted run to succeed")
            seen["act2_recovery_s"] = time.monotonic() - restarted
            seen["act2"] = stack.wait_for(lambda: (s := ingested(env)) >= set(groups[1]) and s, 60, "act 2 stories")
            seen["after_act2"] = env.status(chunks=True)
            print(f"act 1+2 done after {time.monotonic() - started:.0f} s; recovery {seen['act2_recovery_s']:.0f} s")

            # Act 3: new stories, and two manual runs, one a full reindex, racing the scheduled ones.
            for story_id in groups[2]:
                replay.release_at[story_id] = 0.0
            env.airflow("dags", "trigger", "hn_ingest")
            env.airflow("dags", "trigger", "hn_ingest", "-c", '{"reindex": true}')

            def manual_runs_done():
                manual = [r for r in stack.runs() if r["run_type"] == "manual"]
                return len(manual) == 2 and all(r["state"] in ("success", "failed") for r in manual) and manual

            seen["manual_runs"] = stack.wait_for(manual_runs_done, 400, "the manual runs")
            seen["act3"] = stack.wait_for(lambda: (s := ingested(env)) >= set(groups[2]) and s, 120, "act 3 stories")
            seen["runs"] = stack.runs()
            print(f"act 3 done after {time.monotonic() - started:.0f} s")
        seen["final"] = env.status(chunks=True)
        clean = AirflowEnv(tmp / "clean-airflow", tmp / "clean-data", replay.connection_env())
        clean.migrate()
        run = clean.dags_test()
        assert run.succeeded, run.log[-3000:]
        seen["clean"] = clean.status(chunks=True)
        seen["offered"] = {s["id"] for s in replay.live_stories()}
    return seen


def test_a_write_killed_mid_batch_is_repaired_by_clearing_its_run(crashes):
    assert crashes["act1_run"], crashes["runs"]


def test_a_scheduler_killed_mid_run_recovers_after_restart(crashes):
    # A restarted scheduler resets the dead one's running tasks once that one misses its health
    # check (30 s), at the next orphan check (ORPHANED_TASKS_CHECK_INTERVAL, 30 s as `make scheduler` sets it).
    # An orphaned task process (if it outlived the kill) went on writing the same keys meanwhile.
    print(f"task process outlived the scheduler: {crashes['task_outlived_scheduler']}; "
          f"the interrupted run succeeded {crashes['act2_recovery_s']:.0f} s after the restart")
    assert crashes["act2_recovery_s"] < 300


def test_manual_triggers_racing_the_schedule_all_succeed(crashes):
    assert all(r["state"] == "success" for r in crashes["manual_runs"]), crashes["manual_runs"]
    assert all(r["state"] in ("success", "running", "queued") for r in crashes["runs"]), crashes["runs"]


@pytest.mark.parametrize("act", ["after_act1", "after_act2"])
def test_each_crash_leaves_no_duplicate_and_no_partial_story(crashes, act):
    # Checked before act 3's reindex, which rewrites every row and could hide what a crash left.
    assert_no_duplicates(crashes[act])
    assert_stories_whole(crashes[act])


def test_the_store_ends_whole_with_the_rows_of_a_clean_run(crashes):
    final = crashes["final"]
    assert_no_duplicates(final)
    assert_stories_whole(final)
    assert_every_story_accounted_for(final, crashes["offered"])
    assert chunk_rows(final) == chunk_rows(crashes["clean"])
