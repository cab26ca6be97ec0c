"""What Airflow's ProvidersManager reads through the `apache_airflow_provider` entry point.

The connection form is declared here (`conn-fields`, `ui-field-behaviour`), so Airflow 3.2 and later
render it without importing the hook; `MilvusHook.get_ui_field_behaviour` and
`get_connection_form_widgets` return the same fields for older versions.
"""

from __future__ import annotations

import copy
from typing import Any

from milvus_provider import __version__

# Extra fields of the connection, stored in its `extra` JSON under these keys.
CONNECTION_FIELDS: dict[str, dict[str, Any]] = {
    "db_name": {
        "label": "Database",
        "description": "The database on a Milvus server; empty for its default database (Milvus Lite has only that).",
        "schema": {"type": ["string", "null"]},
    },
}

# The standard fields: a Milvus URI carries the port, and a token carries a user ("user:password").
FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login", "extra"],
    "relabeling": {"host": "URI", "password": "Token"},
    "placeholders": {
        "host": "http://localhost:19530, or a Milvus Lite directory such as /data/milvus.db",
        "password": "user:password or an API key; empty without authentication",
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-milvus",
        "name": "Milvus",
        "description": "`Milvus <https://milvus.io/docs>`__: a hook and an upsert operator for a Milvus server or Milvus Lite.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": "Milvus", "external-doc-url": "https://milvus.io/docs", "tags": ["software"]},
        ],
        "hooks": [{"integration-name": "Milvus", "python-modules": ["milvus_provider.hooks.milvus"]}],
        "operators": [{"integration-name": "Milvus", "python-modules": ["milvus_provider.operators.milvus"]}],
        "connection-types": [
            {
                "connection-type": "milvus",
                "hook-class-name": "milvus_provider.hooks.milvus.MilvusHook",
                "hook-name": "Milvus",
                "conn-fields": copy.deepcopy(CONNECTION_FIELDS),
                "ui-field-behaviour": copy.deepcopy(FIELD_BEHAVIOUR),
            },
        ],
    }
