"""The scheduler path: hn_ingest on its 15 s schedule under the real scheduler, then a backfill.

The replay lists only the 4 newest stories in /v0/newstories.json (as the live API lists only the
500 newest): scheduled runs ingest those; older stories are reachable through Algolia only, so after
the backfill the store must hold exactly the 4 newest, one story published while a run waited on the
triggerer, and the stories created in the window. Pages live on two sites; one of the newest stories
is disallowed by its site's robots.txt, and no site may see more than the default per-host limits
(2 at once, 1 per second) while backfill runs go in parallel.
"""

from __future__ import annotations

import re
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.config import PolitenessConfig
from tests.airflow_cli import AirflowEnv, AirflowStack
from tests.replay_server import INTERVAL, ReplayServer, load_corpus, pick_window

pytestmark = pytest.mark.e2e

NEWEST = 4


def task_states(env: AirflowEnv, task_id: str) -> dict[str, str]:
    """run id → state of `task_id` in that run, read from the SQLite metadata DB."""
    with sqlite3.connect(f"file:{env.home / 'airflow.db'}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute("SELECT run_id, state FROM task_instance WHERE dag_id = 'hn_ingest' AND task_id = ?",
                          (task_id,)).fetchall()
    return {run_id: state for run_id, state in rows}


def discover_log(env: AirflowEnv, run_id: str) -> str:
    """The task's own log (the triggerer's lines are in `attempt=N.log.trigger.*.log` files)."""
    folder = env.home / "logs" / "dag_id=hn_ingest" / f"run_id={run_id}" / "task_id=discover_stories"
    return "\n".join(p.read_text(errors="replace") for p in sorted(folder.glob("attempt=*.log"))
                     if re.fullmatch(r"attempt=\d+\.log", p.name))


def airflow_defer_race(env: AirflowEnv, log: Path, line: str) -> bool:
    """Whether an ERROR line is Airflow 3.3's race on a task resumed from deferral (apache/airflow#72716).

    When the trigger fires within moments of the deferral, the resumed attempt can be running before
    the scheduler reads the worker's exit from the deferral; the scheduler then takes that exit for the
    running attempt's end ("state mismatch", recorded in the `log` table) and fails it, so the attempt's
    own success is refused and the task runner logs this line; the task's retry ends the run in success.
    """
    if "Failed to report terminal task state to supervisor" not in line:
        return False
    run_id = log.parent.parent.name.removeprefix("run_id=")
    task_id = log.parent.name.removeprefix("task_id=")
    with sqlite3.connect(f"file:{env.home / 'airflow.db'}?mode=ro", uri=True, timeout=30) as db:
        mismatches = db.execute("SELECT extra FROM log WHERE event = 'state mismatch' AND dag_id = 'hn_ingest' "
                                "AND run_id = ? AND task_id = ?", (run_id, task_id)).fetchall()
    return any("finished with state success, but the task instance's state attribute is running" in (extra or "")
               for (extra,) in mismatches)


def test_scheduled_runs_then_a_backfill_of_a_past_window(require_corpus, tmp_path):
    replay = ReplayServer(page_hosts=2)
    load_corpus(replay, url_stories=12, text_posts=1, dead=1, deleted=0)
    replay.newstories_limit = NEWEST
    live = sorted(replay.live_stories(), key=lambda s: -s["id"])
    late = live[0]["id"]  # published while an idle run waits on the triggerer
    replay.release_at[late] = time.monotonic() + 10**9
    live = live[1:]
    newest = {s["id"] for s in live[:NEWEST]}
    banned = next(s for s in live[:NEWEST] if s.get("url"))
    banned_site = next(i for i, url in enumerate(replay.site_urls) if banned["url"].startswith(url))
    banned_path = banned["url"].removeprefix(replay.site_urls[banned_site])
    replay.robots[banned_site] = f"User-agent: *\nDisallow: {banned_path}\n"
    env = AirflowEnv(tmp_path / "airflow", tmp_path / "data", replay.connection_env())
    env.migrate()
    with replay, AirflowStack(env) as stack:
        def stored() -> dict[int, str]:
            status = env.status()
            return {r["story_id"]: r["status"] for r in status["story_rows"]}

        states = stack.wait_for(lambda: (s := stored()) and newest <= set(s) and s, 420, "scheduled runs to ingest")
        assert all(states[i] == "ingested" for i in newest - {banned["id"]}), states
        assert states[banned["id"]] == "skipped"
        runs = stack.runs()
        assert any(r["run_type"] == "scheduled" and r["state"] == "success" for r in runs), runs

        # Nothing new: a run defers to the triggerer (no worker slot held); the story published then
        # resumes that same run, which ingests it.
        waiting = stack.wait_for(lambda: [r for r, state in task_states(env, "discover_stories").items()
                                          if state == "deferred"], 120, "a run deferring while idle", poll=0.3)[0]
        replay.release_at[late] = time.monotonic()
        stack.wait_for(lambda: stored().get(late) == "ingested", 120, "the story published while idle")
        assert task_states(env, "discover_stories")[waiting] == "success"
        assert f"new stories listed while watching: [{late}" in discover_log(env, waiting)
        # A run that watched until its end with nothing new (a run that starts late does not watch):
        # skipped, and so is everything after it.
        idle = stack.wait_for(lambda: [r for r, state in task_states(env, "discover_stories").items()
                                       if state == "skipped" and "on the triggerer" in discover_log(env, r)],
                              120, "an idle run that watched the API")[0]
        # ended by the triggerer, not resumed on a worker
        assert discover_log(env, idle).count("Pre Execute") == 1, discover_log(env, idle)
        stack.wait_for(lambda: task_states(env, "report_run").get(idle) == "skipped", 60, "the idle run's last task skipped")

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
    # Every run succeeded: no task log (worker or triggerer) has an ERROR line but Airflow's own
    # resume-after-defer race, proven by the scheduler's record of it (see `airflow_defer_race`).
    assert not [r for r in stack.runs() if r["state"] == "failed"], stack.runs()
    errors = [line[:300] for log in (env.home / "logs" / "dag_id=hn_ingest").rglob("*.log")
              for line in log.read_text(errors="replace").splitlines()
              if '"level":"error"' in line and not airflow_defer_race(env, log, line)]
    assert errors == [], errors[:5]
    # The metadata cleanup bounds the metadata DB: with 0 days of retention, no run history is left.
    runs_before = len(task_states(env, "discover_stories"))
    env.extra_env["HN_INGEST_METADATA_RETENTION_DAYS"] = "0"
    clean = env.run(sys.executable, "-m", "include.ops.metadata_cleanup")
    assert "metadata cleanup: removed" in clean.stdout, clean.stdout[-3000:] + clean.stderr[-3000:]
    assert runs_before >= 3 and task_states(env, "discover_stories") == {}
    ingested = {i for i, status in final.items() if status == "ingested"}
    assert ingested == (newest - {banned["id"]}) | in_window | {late}, (
        sorted(ingested), sorted(newest), sorted(in_window), timedelta(seconds=end - start))
    # robots.txt and the per-host limits held across every run and task process.
    assert not [v for v in replay.visits if v.site == banned_site and v.path == banned_path]
    limits = PolitenessConfig()
    for site in range(len(replay.servers)):
        print(f"site {site}: {len(replay.crawl_visits(site))} requests, peak concurrency "
              f"{replay.peak_concurrency(site)}, min gap {replay.min_gap(site):.2f} s")
        assert len(replay.crawl_visits(site)) >= 3 and replay.min_gap(site) >= 1 / limits.host_rate - 0.05
        assert replay.peak_concurrency(site) <= limits.host_concurrency
