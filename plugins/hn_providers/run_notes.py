"""A note on each finished hn_ingest or hn_backfill run, so the grid tells a working run from an idle one without logs.

An Airflow listener (registered by `plugins/hn_ingest_plugin.py`): when a run ends, the scheduler (or
`airflow dags test`) calls it with the run, inside its own database session; the note is written in
that session from what `report_run` returned, e.g. "8 ingested · 1 skipped · 1 failed · 33 chunks".
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)
DAG_IDS = ("hn_ingest", "hn_backfill")  # the live DAG and its backfill companion: same tasks


def run_note(summary: dict | None, state: str) -> str:
    """The note for a run that ended in `state` with `report_run`'s summary (None: it did not report)."""
    if summary is None:
        return "idle: no new stories" if state == "success" else "failed before its report: see the failed task"
    stories = summary.get("stories", {})
    parts = [f"{stories[s]} {s}" for s in ("ingested", "unchanged", "skipped", "failed") if stories.get(s)]
    threads = [f"{summary['threads_read']} threads"] if summary.get("threads_read") else []
    return " · ".join([*parts, *threads, f"{summary.get('chunks_written', 0)} chunks"])


def _note_run(dag_run) -> None:
    if dag_run.dag_id not in DAG_IDS:
        return
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is not None:  # the scheduler's session: the note commits with the run's new state
        _write_note(session, dag_run)
        return
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:  # `dags test` hands over a detached run
        attached = session.scalar(select(DagRun).where(DagRun.dag_id == dag_run.dag_id, DagRun.run_id == dag_run.run_id))
        if attached is not None:
            _write_note(session, attached, dag_run.state)


def _write_note(session, dag_run, state=None) -> None:
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    if dag_run.note:  # a note a person wrote stays
        return
    row = session.scalars(select(XComModel).where(
        XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id, XComModel.task_id == "report_run",
        XComModel.key == "return_value")).first()
    state = state or dag_run.state
    dag_run.note = run_note(XComModel.deserialize_value(row) if row else None, str(getattr(state, "value", state)))


@hookimpl
def on_dag_run_success(dag_run, msg: str) -> None:
    try:
        _note_run(dag_run)
    except Exception:  # noqa: BLE001 - a note is a convenience: it never fails the scheduler's loop
        log.warning("could not write the note of run %s", dag_run.run_id, exc_info=True)


@hookimpl
def on_dag_run_failed(dag_run, msg: str) -> None:
    on_dag_run_success(dag_run, msg)
