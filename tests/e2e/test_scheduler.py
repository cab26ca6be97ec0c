"""The scheduler path: hn_ingest on its 15 s schedule under the real scheduler, then a backfill.

The replay lists only the 4 newest stories in /v0/newstories.json (as the live API lists only the
500 newest): scheduled runs ingest those; older stories are reachable through Algolia only, so after
the backfill the store must hold exactly the 4 newest plus the stories created in the window.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.airflow_cli import AirflowEnv, AirflowStack
from tests.replay_server import INTERVAL, ReplayServer, load_corpus, pick_window

pytestmark = pytest.mark.e2e

NEWEST = 4




def test_scheduled_runs_then_a_backfill_of_a_past_window(require_corpus, tmp_path):
    replay = ReplayServer()
    load_corpus(replay, url_stories=12, text_posts=1, dead=1, deleted=0)
    replay.newstories_limit = NEWEST
    live = sorted(replay.live_stories(), key=lambda s: -s["id"])
    newest = {s["id"] for s in live[:NEWEST]}
    env = AirflowEnv(tmp_path / "airflow", tmp_path / "data", replay.connection_env())
    env.migrate()
    with replay, AirflowStack(env) as stack:
        def stored() -> dict[int, str]:
            status = env.status()
            return {r["story_id"]: r["status"] for r in status["story_rows"]}

        states = stack.wait_for(lambda: (s := stored()) and newest <= set(s) and s, 420, "scheduled runs to ingest")
        assert all(states[i] == "ingested" for i in newest), states
        runs = stack.runs()
        assert any(r["run_type"] == "scheduled" and r["state"] == "success" for r in runs), runs

        start, end = pick_window([s for s in live if s["id"] not in newest])
        in_window = {s["id"] for s in live if start <= s["time"] < end}
        assert in_window and not in_window & newest
        fmt = lambda t: datetime.fromtimestamp(t, UTC).isoformat()  # noqa: E731
        env.airflow("backfill", "create", "--dag-id", "hn_ingest", "--from-date", fmt(start),
                    "--to-date", fmt(end - INTERVAL), "--max-active-runs", "4")
        expected_runs = (end - start) // INTERVAL

        def backfill_done():
            done = [r for r in stack.runs() if r["run_type"] == "backfill" and r["state"] in ("success", "failed")]
            return len(done) >= expected_runs and done

        done = stack.wait_for(backfill_done, 600, f"{expected_runs} backfill runs")
        assert all(r["state"] == "success" for r in done), done
        final = stored()
    ingested = {i for i, status in final.items() if status == "ingested"}
    assert ingested == newest | in_window, (sorted(ingested), sorted(newest), sorted(in_window), timedelta(seconds=end - start))
