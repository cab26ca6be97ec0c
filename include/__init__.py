"""hn-rag-ingest: the Hacker News → Milvus pipeline, free of Airflow imports.

The folders read as the data's path: `hn` (where stories come from) → `crawl` (getting their pages,
politely and safely) → `parse` (main content, elements, chunks) → `embed` (vectors) → `store` (Milvus),
with `pipeline` tying the stages into a run's batches and `ops` holding the command-line tools.
`config` (settings) and `records` (the typed records passed between stages) sit at the top: every
subpackage may import them, and they import nothing of the project, so no import circle can form.
A subpackage imports only those two, the ones before it on the path, and `shared_storage`.
"""
