"""Tell someone when a task of hn_ingest has failed for good (its retries spent).

Configured by the connection `hn_ingest_alerts` (`AIRFLOW_CONN_HN_INGEST_ALERTS`): its host is a
webhook URL (Slack-compatible: the JSON body carries `text`) that receives one POST per failure. Without
that connection the alert is the task log's ERROR line, which log shippers and the UI already show.
"""

from __future__ import annotations

import json

from airflow.sdk import BaseNotifier

ALERTS_CONN_ID = "hn_ingest_alerts"


class IngestFailureNotifier(BaseNotifier):
    """`on_failure_callback` of every hn_ingest task: called once a task has no retry left."""

    def __init__(self, conn_id: str = ALERTS_CONN_ID) -> None:
        super().__init__()
        self.conn_id = conn_id

    def notify(self, context) -> None:
        message = failure_message(context)
        self.log.error("%s", message)
        url = self._webhook_url()
        if not url:
            return
        import requests

        try:  # an alert that cannot be sent must not hide the failure it reports
            response = requests.post(url, data=json.dumps({"text": message}), timeout=10,
                                     headers={"Content-Type": "application/json"})
            response.raise_for_status()
        except requests.RequestException as exc:
            self.log.error("could not send the failure alert to connection %r: %s", self.conn_id, exc)

    def _webhook_url(self) -> str | None:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            connection = BaseHook.get_connection(self.conn_id)
        except AirflowNotFoundException:
            return None
        host = (connection.host or "").strip()
        if host and connection.conn_type in ("http", "https") and "://" not in host:
            host = f"{connection.conn_type}://{host}"
        return host or None


def failure_message(context) -> str:
    ti = context["ti"]
    error = context.get("exception")
    map_part = f" [{ti.map_index}]" if getattr(ti, "map_index", -1) not in (-1, None) else ""
    return (f"hn_ingest: task {ti.task_id}{map_part} of run {context['run_id']} failed after "
            f"{getattr(ti, 'try_number', '?')} tries: {type(error).__name__ + ': ' if error else ''}{error or 'no error'}")
