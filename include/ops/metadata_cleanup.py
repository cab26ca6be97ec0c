"""Keep Airflow's metadata DB bounded: delete hn_ingest's run history older than a retention period.

`hn_ingest` runs every 15 seconds: 5,760 runs a day, each leaving rows behind (the run, its task
instances, XComs, audit log entries). This runs `airflow db clean` for `hn_ingest` only, without an
archive table, keeping `HN_INGEST_METADATA_RETENTION_DAYS` (7) days. It runs beside the scheduler (it
needs the metadata DB, which Airflow 3 keeps out of reach of tasks, so it cannot be a DAG):
`make scheduler` and the compose stack start it; elsewhere, from cron on the scheduler's host:

    python -m include.ops.metadata_cleanup            # once
    python -m include.ops.metadata_cleanup --every 86400   # daily, in the foreground
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

# The history tables that grow with every run; `dag_run` takes its task instances and XComs with it.
TABLES = "dag_run,task_instance,task_instance_history,xcom,log,job,trigger"
# Airflow 3.3's `db clean --dag-ids` always fails on `deadline` (it has no dag_id column); a run's
# deadlines go with the run anyway (a cascade in the database), and hn_ingest sets none.
NOT_FILTERABLE_BY_DAG = {"deadline"}
_UNCLEANED = re.compile(r"tables were not cleaned due to errors: \[([^\]]*)\]")


def retention_days() -> float:
    return float(os.environ.get("HN_INGEST_METADATA_RETENTION_DAYS", "7"))


def clean_command(before: datetime, dag_ids: str = "hn_ingest,hn_backfill") -> list[str]:
    # `python -m airflow`: the CLI of this environment, wherever its scripts are installed.
    return [sys.executable, "-m", "airflow", "db", "clean", "--clean-before-timestamp", before.isoformat(),
            "--dag-ids", dag_ids, "--tables", TABLES, "--skip-archive", "--yes",
            "--batch-size", "1000"]  # short transactions: the scheduler keeps writing meanwhile


def uncleaned_tables(output: str) -> set[str]:
    """Tables `airflow db clean` reports it could not clean (it exits 0 all the same)."""
    return {name.strip(" '\"") for match in _UNCLEANED.findall(output) for name in match.split(",") if name.strip()}


def clean_once(days: float | None = None) -> str:
    """Delete hn_ingest's history older than `days` (the setting by default); raise if anything failed."""
    before = datetime.now(UTC) - timedelta(days=retention_days() if days is None else days)
    done = subprocess.run(clean_command(before), capture_output=True, text=True, timeout=3600)
    failed = uncleaned_tables(done.stdout + done.stderr) - NOT_FILTERABLE_BY_DAG
    if done.returncode != 0 or failed:
        raise RuntimeError(f"airflow db clean failed (exit {done.returncode}, tables not cleaned: {sorted(failed)}): "
                           f"{(done.stderr or done.stdout)[-2000:]}")
    removed = sum(int(n) for n in re.findall(r"Found (\d+) rows meeting deletion criteria", done.stdout))
    return f"removed {removed} rows of hn_ingest history before {before.isoformat(timespec='seconds')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=0, help="repeat every this many seconds (0: once)")
    parser.add_argument("--days", type=float, default=None, help="override HN_INGEST_METADATA_RETENTION_DAYS")
    args = parser.parse_args()
    while True:
        try:
            print(f"metadata cleanup: {clean_once(args.days)}", flush=True)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            if not args.every:
                raise SystemExit(f"metadata cleanup: {exc}") from exc
            print(f"metadata cleanup failed, trying again next time: {exc}", file=sys.stderr, flush=True)
        if not args.every:
            return
        time.sleep(args.every)


if __name__ == "__main__":
    main()
