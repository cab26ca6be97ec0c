"""
### hn_ingest_maintenance: keep Airflow's metadata DB bounded

`hn_ingest` runs every 15 seconds: 5,760 runs a day, and each leaves rows behind (the run, its task
instances, XComs, audit log entries). Once a day this DAG deletes `hn_ingest`'s run history older than
`HN_INGEST_METADATA_RETENTION_DAYS` (default 7) with `airflow db clean`, so the metadata DB holds about
a week of runs, whatever the uptime. Nothing of the ingested data is touched: it lives in Milvus.

Only `hn_ingest`'s rows are cleaned (`--dag-ids`), without an archive table (`--skip-archive`). The task
runs the `airflow` CLI, so it needs a worker that reaches the metadata DB (any worker of the LocalExecutor
and of this project's docker-compose stack). Elsewhere, run the same command from cron on the scheduler host:

    airflow db clean --clean-before-timestamp "$(date -u -d '7 days ago' +%FT%T)" --dag-ids hn_ingest \\
        --tables dag_run,task_instance,task_instance_history,xcom,log,job,trigger --skip-archive --yes
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pendulum
from airflow.sdk import dag, task

RETENTION_DAYS = float(os.environ.get("HN_INGEST_METADATA_RETENTION_DAYS", "7"))
# The history tables that grow with every run; `dag_run` takes its task instances and XComs with it.
TABLES = "dag_run,task_instance,task_instance_history,xcom,log,job,trigger"
# Airflow 3.3's `db clean --dag-ids` always fails on `deadline` (it has no dag_id column); a run's
# deadlines go with the run anyway (a cascade in the database), and hn_ingest sets none.
NOT_FILTERABLE_BY_DAG = {"deadline"}
_UNCLEANED = re.compile(r"tables were not cleaned due to errors: \[([^\]]*)\]")


def clean_command(before: datetime, dag_ids: str = "hn_ingest") -> list[str]:
    # `python -m airflow`: the CLI of this worker's own environment, wherever its scripts are installed.
    return [sys.executable, "-m", "airflow", "db", "clean", "--clean-before-timestamp", before.isoformat(),
            "--dag-ids", dag_ids, "--tables", TABLES, "--skip-archive", "--yes"]


def uncleaned_tables(output: str) -> set[str]:
    """Tables `airflow db clean` reports it could not clean (it exits 0 all the same)."""
    return {name.strip(" '\"") for match in _UNCLEANED.findall(output) for name in match.split(",") if name.strip()}


@dag(
    dag_id="hn_ingest_maintenance",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["hacker-news", "maintenance"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
)
def hn_ingest_maintenance():
    @task
    def clean_metadata_db() -> str:
        before = datetime.now(UTC) - timedelta(days=RETENTION_DAYS)
        command = clean_command(before)
        print("running:", " ".join(command))
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        print(done.stdout[-5000:])
        failed = uncleaned_tables(done.stdout + done.stderr) - NOT_FILTERABLE_BY_DAG
        if done.returncode != 0 or failed:
            raise RuntimeError(f"airflow db clean failed (exit {done.returncode}, tables not cleaned: "
                               f"{sorted(failed)}): {done.stderr[-2000:]}")
        return f"removed hn_ingest history before {before.isoformat()}"

    clean_metadata_db()


hn_ingest_maintenance()
