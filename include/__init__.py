"""hn-rag-ingest: the stages of the Hacker News → Milvus pipeline, free of Airflow imports."""
