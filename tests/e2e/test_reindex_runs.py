"""A reindex of a store that no single run may map, through real `airflow dags test` runs.

Airflow refuses to map more than `[core] max_map_length` items; here it is 2, so the store's 24
stories at 10 a batch need 3 batches: a reindex that maps the whole store in one run fails, as it did
before the reindex became a job. Now the run of `hn_ingest` that begins it takes a slice (10 stories)
and fetches and embeds it again (`conditional=false`: every chunk row rewritten); it is killed with
SIGKILL in the middle of its writes, and runs of `hn_reindex` finish the job (the lost slice taken again
at the end of the pass): every story redone, the store's rows unchanged in number, none duplicated, none
half-written. A live run meanwhile takes no slice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.airflow_cli import BIN, AirflowEnv
from tests.crash_control import CrashPoint
from tests.invariants import assert_no_duplicates, assert_stories_whole
from tests.replay_server import ReplayServer, load_corpus

pytestmark = pytest.mark.e2e


def test_a_reindex_bigger_than_a_run_goes_in_slices_and_survives_a_killed_run(require_corpus, tmp_path):
    replay = ReplayServer(page_hosts=4)
    load_corpus(replay, url_stories=24, text_posts=0, dead=0, deleted=0)
    point = CrashPoint(tmp_path / "crash-points")
    env = AirflowEnv(tmp_path / "airflow", tmp_path / "data", {
        **replay.connection_env(), "HN_INGEST_COMMENTS": "false", "HN_INGEST_HOST_RATE": "20",
        "HN_TEST_CRASH_POINTS": str(point.folder)})
    env.migrate()
    with replay:
        first = env.dags_test()
        assert first.succeeded, first.log[-4000:]
        before = env.status(chunks=True)
        stories = {r["story_id"] for r in before["story_rows"] if r["status"] == "ingested"}
        assert len(stories) >= 20
        env.extra_env.update({"AIRFLOW__CORE__MAX_MAP_LENGTH": "2", "HN_INGEST_REINDEX_PER_RUN": "10"})

        # A run of the reindex killed between its chunk rows and its story states.
        point.arm()
        # Unconditional: every page is fetched and embedded again (a conditional one gets 304s and rewrites nothing).
        killed = subprocess.Popen([str(BIN / "airflow"), "dags", "test", "hn_ingest", "-c",
                                   '{"reindex": true, "conditional": false}'],
                                  env=env.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        point.wait_for_paused_pid(600)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        started = max(r["updated_at"] for r in before["story_rows"]) + 1
        done = env.status()["reindex"]["done"]
        live = env.dags_test()  # the live DAG leaves the reindex to hn_reindex: its runs stay short
        assert live.succeeded, live.log[-4000:]
        assert env.status()["reindex"]["done"] == done
        runs = []
        for _ in range(6):
            status = env.status()
            if status["reindex"] and status["reindex"]["state"] == "finished":
                break
            time.sleep(1.1)  # the reindex began after every earlier write: a second apart
            runs.append(env.dags_test(dag_id="hn_reindex"))
            assert runs[-1].succeeded, runs[-1].log[-4000:]
            assert not runs[-1].lines("max_map_length"), runs[-1].lines("max_map_length")
        after = env.status(chunks=True)
    assert after["reindex"]["state"] == "finished", after["reindex"]
    assert after["reindex"]["done"] == after["reindex"]["total"] == len(stories)
    assert 3 <= len(runs) <= 4, len(runs)  # 24 stories, 10 a run, the killed run's slice taken again
    assert all(r.lines("reindex: ") for r in runs)  # each run's log says where the reindex stands
    # Every story redone (its state written since the reindex began), the rows as before, whole, once.
    redone = {r["story_id"] for r in after["story_rows"] if r["updated_at"] >= started}
    assert redone >= stories
    assert after["chunks"] == before["chunks"] and after["stories"] == before["stories"]
    # Rewritten, not kept: every chunk row of a redone story was written since the reindex began.
    stale = [r["id"] for r in after["chunk_rows"] if r["story_id"] in stories and r["ingested_at"] < started]
    assert stale == [], stale[:10]
    assert_no_duplicates(after)
    assert_stories_whole(after)
