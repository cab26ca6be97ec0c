"""Bench: what idle scheduled runs cost, and what they leave in the metadata DB.

    python -m bench.run_hygiene [--minutes 5] [--schedule 5]

The real scheduler (LocalExecutor, SQLite metadata DB) runs hn_ingest with a short interval (a
fast-forward of the 15 s schedule) over a replay of 3 stories: the first run ingests them, every later
run is idle. Then, with the stack stopped:

- worker-slot seconds of an idle run: the time its tasks spent in a task process (from the first to
  the last line of each task log segment; a deferral ends a segment, the triggerer's wait is not
  counted);
- metadata DB rows per run, table by table, extrapolated to a day of the 15 s schedule (5,760 runs);
- the metadata cleanup (`python -m include.ops.metadata_cleanup`), run with 0 days kept: rows left.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.common import corpus_ok, fresh_env, print_table
from tests.airflow_cli import AirflowStack
from tests.replay_server import ReplayServer, load_corpus

HISTORY_TABLES = ["dag_run", "task_instance", "task_instance_history", "xcom", "log", "job", "trigger",
                  "task_reschedule", "rendered_task_instance_fields", "task_map"]
RUNS_PER_DAY = 86_400 // 15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--schedule", type=int, default=5, help="the DAG's interval in seconds")
    parser.add_argument("--label", default="", help="a name for this code version in the results file")
    args = parser.parse_args()
    corpus_ok()
    replay = ReplayServer()
    load_corpus(replay, url_stories=3, text_posts=0, dead=0, deleted=0)
    env = fresh_env("run-hygiene", replay)
    env.extra_env["HN_INGEST_SCHEDULE_SECONDS"] = str(args.schedule)
    with replay, AirflowStack(env):
        time.sleep(args.minutes * 60)
    db_path = env.home / "airflow.db"
    runs = discover_states(db_path)
    idle = [run for run, state in runs.items() if state == "skipped" or (state == "success" and _empty(env.home, run))]
    slot = [worker_seconds(env.home, run) for run in idle]
    rows = table_rows(db_path)
    per_run = {t: n / max(1, len(runs)) for t, n in rows.items()}
    size = sum(p.stat().st_size for p in env.home.glob("airflow.db*"))
    env.run(sys.executable, "-m", "include.ops.metadata_cleanup", "--days", "0", timeout=600)
    left = table_rows(db_path)
    table = [
        ("code", args.label or "this checkout"),
        ("runs (interval, minutes)", f"{len(runs)} ({args.schedule} s, {args.minutes:g} min); idle {len(idle)}"),
        ("worker-slot seconds per idle run", f"median {statistics.median(slot):.2f}, max {max(slot):.2f}" if slot else "-"),
        ("metadata rows per run", f"{sum(per_run.values()):.1f}  " + json.dumps({t: round(v, 2) for t, v in per_run.items() if v})),
        ("extrapolated rows per day (15 s schedule)", f"{sum(per_run.values()) * RUNS_PER_DAY:,.0f}"),
        ("metadata DB size (bytes, with WAL)", f"{size:,}"),
        ("rows left after the metadata cleanup (0 days kept)", f"{sum(left.values())}  " + json.dumps({t: n for t, n in left.items() if n})),
    ]
    print_table("Idle runs and the metadata DB (real scheduler, LocalExecutor)", table,
                f"run-hygiene{'-' + args.label if args.label else ''}.txt")


def discover_states(db_path: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT run_id, state FROM task_instance "
                               "WHERE dag_id = 'hn_ingest' AND task_id = 'discover_stories' AND state IS NOT NULL"))


def table_rows(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as db:
        present = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in HISTORY_TABLES if t in present}  # noqa: S608


def _task_logs(home: Path, run_id: str) -> list[Path]:
    """The task processes' logs (not the triggerer's `attempt=N.log.trigger.M.log`)."""
    folder = home / "logs" / "dag_id=hn_ingest" / f"run_id={run_id}"
    return sorted(p for p in folder.glob("task_id=*/**/*.log") if re.fullmatch(r"attempt=\d+\.log", p.name))


def _empty(home: Path, run_id: str) -> bool:
    """A run whose discover found nothing (the code before idle runs were skipped)."""
    return any("0 stories in 0 batches" in p.read_text(errors="replace") for p in _task_logs(home, run_id)
               if "discover_stories" in str(p))


def worker_seconds(home: Path, run_id: str) -> float:
    """Seconds the run's tasks spent in task processes: log segments, split where a task deferred."""
    total = 0.0
    for log in _task_logs(home, run_id):
        segment: list[float] = []
        for line in log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            segment.append(datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp())
            if "DEFERRED" in str(record.get("event", "")):
                total += segment[-1] - segment[0]
                segment = []
        if segment:
            total += segment[-1] - segment[0]
    return total


if __name__ == "__main__":
    main()
