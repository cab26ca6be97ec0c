"""The scheduler path, on a Postgres metadata DB as `make scheduler` runs it: hn_ingest on its 15 s
schedule, then backfills of hn_backfill created while the scheduler runs, from the CLI and through the
REST call the UI's backfill dialog makes.

The replay lists only the 4 newest stories in /v0/newstories.json (as the live API lists only the
500 newest): scheduled runs ingest those; older stories are reachable through Algolia only, so after
the backfills the store must hold every story of the two hours of history, one story published while
a run waited on the triggerer among them, each hour in exactly one backfill run. Pages live on two
sites; one of the newest stories is disallowed by its site's robots.txt, and no site may see more than
the default per-host limits (2 at once, 1 per second) while runs go in parallel.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from include.config import PolitenessConfig
from tests.airflow_cli import AirflowEnv, AirflowStack
from tests.replay_server import ReplayServer, load_corpus
from tests.services import Postgres, ensure_debian_packages

pytestmark = pytest.mark.e2e

NEWEST = 4
HOUR = 3600
ADMIN_PASSWORD = "scheduler-test-admin"


def task_states(env: AirflowEnv, task_id: str, dag_id: str = "hn_ingest") -> dict[str, str]:
    """run id → state of `task_id` in that run, read from the metadata DB."""
    rows = env.query("SELECT run_id, state FROM task_instance WHERE dag_id = :dag AND task_id = :task",
                     dag=dag_id, task=task_id)
    return {run_id: state for run_id, state in rows}


def deferred_with_time_left(env: AirflowEnv, seconds: float) -> list[str]:
    """Runs whose discover_stories waits on the triggerer with at least `seconds` of its watch left.

    An idle run watches until just before the next run is due (its data interval's end plus one
    interval), so a run found near the end of its watch may time out before a story released now is
    seen: the test takes only a run with time to spare, whatever the machine's load."""
    rows = env.query("SELECT ti.run_id, r.data_interval_start, r.data_interval_end FROM task_instance ti "
                     "JOIN dag_run r ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id WHERE ti.dag_id = 'hn_ingest' "
                     "AND ti.task_id = 'discover_stories' AND ti.state = 'deferred'")
    now = time.time()

    def unix(moment) -> float:
        moment = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment))
        return moment.replace(tzinfo=moment.tzinfo or UTC).timestamp()

    return [run_id for run_id, start, end in rows if 2 * unix(end) - unix(start) - 1 - now >= seconds]


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
    # Only the deferring task, in its first try's log, and only when that try was retried once.
    if task_id != "discover_stories" or log.name != "attempt=1.log":
        return False
    tries = env.query("SELECT try_number FROM task_instance WHERE dag_id = 'hn_ingest' AND run_id = :run "
                      "AND task_id = :task", run=run_id, task=task_id)
    if [int(t) for (t,) in tries] != [2]:
        return False
    mismatches = env.query("SELECT extra FROM log WHERE event = 'state mismatch' AND dag_id = 'hn_ingest' "
                           "AND run_id = :run AND task_id = :task", run=run_id, task=task_id)
    return any("finished with state success, but the task instance's state attribute is running" in (extra or "")
               for (extra,) in mismatches)


def backfill_runs_by_hour(env: AirflowEnv) -> dict[int, list[dict]]:
    """hn_backfill's backfill runs (state, note) by the hour of history their data interval starts in."""
    rows = env.query("SELECT r.run_id, r.state, r.data_interval_start, n.content FROM dag_run r "
                     "LEFT JOIN dag_run_note n ON n.dag_run_id = r.id "
                     "WHERE r.dag_id = 'hn_backfill' AND r.run_type = 'backfill'")
    by_hour: dict[int, list[dict]] = {}
    for run_id, state, start, note in rows:
        start = start if isinstance(start, datetime) else datetime.fromisoformat(str(start))
        hour = int(start.replace(tzinfo=start.tzinfo or UTC).timestamp()) // HOUR * HOUR
        by_hour.setdefault(hour, []).append({"run_id": run_id, "state": state, "note": note})
    return by_hour


def test_scheduled_runs_then_backfills_created_while_the_scheduler_runs(require_corpus, tmp_path):
    ensure_debian_packages("postgresql")
    replay = ReplayServer(page_hosts=2)
    load_corpus(replay, url_stories=12, text_posts=1, dead=1, deleted=0)
    replay.newstories_limit = NEWEST
    live = sorted(replay.live_stories(), key=lambda s: -s["id"])
    late = live[0]["id"]  # published while an idle run waits on the triggerer
    replay.release_at[late] = time.monotonic() + 10**9
    newest = {s["id"] for s in live[1 : NEWEST + 1]}
    banned = next(s for s in live[1 : NEWEST + 1] if s.get("url"))
    banned_site = next(i for i, url in enumerate(replay.site_urls) if banned["url"].startswith(url))
    banned_path = banned["url"].removeprefix(replay.site_urls[banned_site])
    replay.robots[banned_site] = f"User-agent: *\nDisallow: {banned_path}\n"
    hours = sorted({s["time"] // HOUR * HOUR for s in live})
    assert len(hours) == 2, hours  # the corpus's stories span an hour boundary: one backfill run each
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"admin": ADMIN_PASSWORD}))
    with Postgres(tmp_path / "pg") as pg:
        env = AirflowEnv(tmp_path / "airflow", tmp_path / "data", {
            **replay.connection_env(), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.sqlalchemy_url,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords)})
        env.migrate()
        with replay, AirflowStack(env) as stack:
            run_scheduled_then_backfills(env, stack, replay, newest, banned, late, hours)
            final = {r["story_id"]: r["status"] for r in env.status()["story_rows"]}
        # Every run succeeded: no task log (worker or triggerer) has an ERROR line but Airflow's own
        # resume-after-defer race, proven by the scheduler's record of it (see `airflow_defer_race`).
        assert not [r for r in stack.runs() + stack.runs("hn_backfill") if r["state"] == "failed"]
        errors, races = [], []
        for log in (env.home / "logs").glob("dag_id=*/**/*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if '"level":"error"' in line:
                    (races if airflow_defer_race(env, log, line) else errors).append((log, line[:300]))
        assert errors == [], errors[:5]
        race_runs = [log.parent.parent.name for log, _ in races]
        assert len(race_runs) == len(set(race_runs)), races  # at most one such line per run
        # The metadata cleanup bounds the metadata DB: with 0 days of retention, no run history is left.
        runs_before = len(task_states(env, "discover_stories"))
        env.extra_env["HN_INGEST_METADATA_RETENTION_DAYS"] = "0"
        clean = env.run(sys.executable, "-m", "include.ops.metadata_cleanup")
        assert "metadata cleanup: removed" in clean.stdout, clean.stdout[-3000:] + clean.stderr[-3000:]
        assert runs_before >= 3 and task_states(env, "discover_stories") == {}
    ingested = {i for i, status in final.items() if status == "ingested"}
    assert ingested == {s["id"] for s in live} - {banned["id"]}, (sorted(ingested), sorted(s["id"] for s in live))
    assert final[banned["id"]] == "skipped"
    # robots.txt and the per-host limits held across every run and task process.
    assert not [v for v in replay.visits if v.site == banned_site and v.path == banned_path]
    limits = PolitenessConfig()
    for site in range(len(replay.servers)):
        print(f"site {site}: {len(replay.crawl_visits(site))} requests, peak concurrency "
              f"{replay.peak_concurrency(site)}, min gap {replay.min_gap(site):.2f} s")
        assert len(replay.crawl_visits(site)) >= 3 and replay.min_gap(site) >= 1 / limits.host_rate - 0.05
        assert replay.peak_concurrency(site) <= limits.host_concurrency


def run_scheduled_then_backfills(env, stack, replay, newest, banned, late, hours) -> None:
    def stored() -> dict[int, str]:
        return {r["story_id"]: r["status"] for r in env.status()["story_rows"]}

    states = stack.wait_for(lambda: (s := stored()) and newest <= set(s) and s, 420, "scheduled runs to ingest")
    assert all(states[i] == "ingested" for i in newest - {banned["id"]}), states
    assert states[banned["id"]] == "skipped"
    assert any(r["run_type"] == "scheduled" and r["state"] == "success" for r in stack.runs()), stack.runs()

    # Nothing new: a run defers to the triggerer (no worker slot held); the story published then
    # resumes that same run, which ingests it.
    waiting = stack.wait_for(lambda: deferred_with_time_left(env, 6), 180, "a run deferring while idle", poll=0.3)[0]
    replay.release_at[late] = time.monotonic()
    stack.wait_for(lambda: stored().get(late) == "ingested", 120, "the story published while idle")
    assert task_states(env, "discover_stories")[waiting] == "success"
    assert f"new stories listed while watching: [{late}" in discover_log(env, waiting)
    # A run that watched until its end with nothing new (a run that starts late does not watch):
    # skipped, and so is everything after it.
    idle = stack.wait_for(lambda: [r for r, state in task_states(env, "discover_stories").items()
                                   if state == "skipped" and "on the triggerer" in discover_log(env, r)],
                          120, "an idle run that watched the API")[0]
    assert discover_log(env, idle).count("Pre Execute") == 1, discover_log(env, idle)  # ended by the triggerer
    stack.wait_for(lambda: task_states(env, "report_run").get(idle) == "skipped", 60, "the idle run's last task skipped")

    # Backfills of hn_backfill while the scheduler runs: the first hour from the CLI (the README's command),
    # then the second through the REST call the UI's backfill dialog makes (no run conf unless overridden);
    # Airflow runs one backfill of a DAG at a time and refuses a second (409) while one is running.
    fmt = lambda t: datetime.fromtimestamp(t, UTC).isoformat()  # noqa: E731
    env.airflow("backfill", "create", "--dag-id", "hn_backfill", "--from-date", fmt(hours[0]),
                "--to-date", fmt(hours[0]), "--max-active-runs", "2")

    def backfilled(wanted: list[int]):
        def done() -> dict[int, list[dict]]:
            by_hour = backfill_runs_by_hour(env)
            finished = all(r["state"] in ("success", "failed") for runs in by_hour.values() for r in runs)
            return by_hour if finished and set(by_hour) == set(wanted) else {}
        return done

    stack.wait_for(backfilled(hours[:1]), 600, "the first hour's backfill run")
    stack.wait_for(lambda: env.query("SELECT count(*) FROM backfill WHERE completed_at IS NULL")[0][0] == 0, 120,
                   "the scheduler to mark the first backfill complete", poll=1)
    token = requests.post(f"{stack.base_url}/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD},
                          timeout=30).json()["access_token"]
    dialog = requests.post(f"{stack.base_url}/api/v2/backfills", headers={"Authorization": f"Bearer {token}"},
                           json={"dag_id": "hn_backfill", "from_date": fmt(hours[1]), "to_date": fmt(hours[1]),
                                 "max_active_runs": 2, "reprocess_behavior": "none", "run_backwards": False,
                                 "dag_run_conf": None}, timeout=60)
    assert dialog.status_code in (200, 201), dialog.text
    by_hour = stack.wait_for(backfilled(hours), 600, "a backfill run per hour of history")
    # One run per hour of history (the 15 s DAG took 240), each noting what it did.
    assert {hour: len(runs) for hour, runs in by_hour.items()} == {hour: 1 for hour in hours}, by_hour
    assert all(r["state"] == "success" for runs in by_hour.values() for r in runs), by_hour
    # Each window's run says what it did in the grid: the older hour's stories came only through it
    # ("8 ingested · 8 threads · 61 chunks"); the newer hour's were in already, from the live runs.
    assert re.match(r"\d+ ingested", by_hour[hours[0]][0]["note"] or ""), by_hour
    assert all(r["note"] for runs in by_hour.values() for r in runs), by_hour
