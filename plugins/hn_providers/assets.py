"""The Assets hn_ingest produces: downstream DAGs can be scheduled on fresh chunks (`schedule=[HN_CHUNKS]`)."""

from __future__ import annotations

from airflow.sdk import Asset

# One name for the collection wherever it lives (Lite file or server): the DAG's lineage, not an address.
HN_CHUNKS = Asset(name="hn_chunks", uri="milvus://hn-rag-ingest/hn_chunks", group="milvus")
