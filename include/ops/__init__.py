"""Tools for the people who run it: the status report, the search CLI, the metadata DB cleanup and the
run metrics, the move of a store from Milvus Lite to a server. Imports `store`, `pipeline`, `embed`
and the base modules; nothing imports `ops` but the DAG, the plugins and users."""
