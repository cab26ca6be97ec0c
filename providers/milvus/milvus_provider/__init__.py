"""Apache Airflow provider for Milvus: the `milvus` connection type, `MilvusHook` and `MilvusUpsertOperator`."""

__version__ = "0.1.0"
