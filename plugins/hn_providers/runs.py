"""The DAG's recent runs as the metadata database holds them, each with its `report_run` summary.

Read inside the api-server, which has the database session (a task would go through the API).
"""

from __future__ import annotations

from datetime import datetime


def recent_runs(dag_id: str, limit: int = 20) -> list[dict]:
    """The newest runs first: id, type, state, times, and what `report_run` counted (None when it did
    not run: an idle run, or a run still going or failed before its end)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)
                               .order_by(DagRun.run_after.desc()).limit(limit)).all()
        summaries = {
            row.run_id: XComModel.deserialize_value(row)
            for row in session.scalars(select(XComModel).where(
                XComModel.dag_id == dag_id, XComModel.task_id == "report_run", XComModel.key == "return_value",
                XComModel.run_id.in_([r.run_id for r in runs])))
        }
        return [
            {
                "run_id": run.run_id,
                "run_type": str(run.run_type.value if hasattr(run.run_type, "value") else run.run_type),
                "state": str(run.state.value if hasattr(run.state, "value") else run.state),
                "run_after": _iso(run.run_after),
                "start_date": _iso(run.start_date),
                "end_date": _iso(run.end_date),
                "note": run.note or "",
                "summary": summaries.get(run.run_id),
            }
            for run in runs
        ]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
