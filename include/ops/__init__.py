"""Tools for the people who run it: the status report, the search CLI, the metadata DB cleanup and the
run metrics. Imports `store` and `config`; nothing imports `ops` but the DAG, the plugins and users."""
