"""Who may read the ingested data over HTTP: whoever Airflow lets read the `hn_ingest` DAG.

Airflow's own check (the configured auth manager): a JWT as `Authorization: Bearer` (from
`POST /auth/token`) or the UI's session cookie, so the ingestion view calls the API as its viewer.
No token: 401; a user without read access to the DAG: 403.
"""

from __future__ import annotations

from airflow.api_fastapi.core_api.security import requires_access_dag

DAG_ID = "hn_ingest"

require_user = requires_access_dag("GET", param_dag_id=DAG_ID)
