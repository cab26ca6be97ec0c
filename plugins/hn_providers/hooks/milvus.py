"""Airflow hook for Milvus: Milvus Lite by file path (the default) or a Milvus server by URI."""

from __future__ import annotations

from contextlib import ExitStack
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from hn_providers.hosts import LOCAL_EXECUTORS, configured_executor


class MilvusHook(BaseHook):
    """Owns the connection to Milvus and hands out the project's `ChunkStore` on top of it.

    Connection fields: ``host`` is the URI (a path ending in ``.db`` for Milvus Lite, or
    ``http://host:19530`` for a server), ``password`` the token of a server with authentication.
    Without a ``milvus_default`` connection, the Lite database ``data/milvus.db`` of the project is used,
    but only where tasks run on this machine (LocalExecutor, ``airflow dags test``): under a distributed
    executor each worker would write a Lite file of its own, so a missing connection is an error there.
    Extra ``lock_timeout``: seconds to wait for a Milvus Lite directory held by another process (60).

    :param milvus_conn_id: the Airflow connection to use.
    :param lock_timeout: overrides the connection's ``lock_timeout``.
    """

    conn_name_attr = "milvus_conn_id"
    default_conn_name = "milvus_default"
    conn_type = "generic"
    hook_name = "Milvus"

    def __init__(self, milvus_conn_id: str = default_conn_name, lock_timeout: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.milvus_conn_id = milvus_conn_id
        self._lock_timeout = lock_timeout
        self._session = ExitStack()  # what `conn` opened, undone by close()

    @cached_property
    def connection(self):
        """The Airflow connection, or None when it is not defined."""
        try:
            return self.get_connection(self.milvus_conn_id)
        except AirflowNotFoundException:
            executor = configured_executor()
            if executor not in LOCAL_EXECUTORS:
                raise AirflowNotFoundException(
                    f"No Milvus connection {self.milvus_conn_id!r}. With {executor}, tasks run on several hosts "
                    f"and the local default (a Milvus Lite file per host) would split the store: set "
                    f"AIRFLOW_CONN_{self.milvus_conn_id.upper()} to a Milvus server, for example "
                    f"'{{\"conn_type\": \"generic\", \"host\": \"http://milvus:19530\"}}'") from None
            self.log.info("No connection %r: using the project's Milvus Lite database", self.milvus_conn_id)
            return None

    @cached_property
    def uri_and_token(self) -> tuple[str, str]:
        from include.store.client import uri_from_connection

        if self.connection is None:
            return uri_from_connection(None)
        return uri_from_connection(self.connection.host, self.connection.password)

    @property
    def lock_timeout(self) -> float:
        if self._lock_timeout is not None:
            return self._lock_timeout
        extra = self.connection.extra_dejson if self.connection is not None else {}
        return float(extra.get("lock_timeout", 60.0))

    def get_conn(self):
        """A `pymilvus.MilvusClient`; raises `MilvusUnavailable` so the task fails and retries."""
        from include.store.client import open_client

        uri, token = self.uri_and_token
        return open_client(uri, token, lock_timeout=self.lock_timeout)

    @cached_property
    def conn(self):
        from include.store.client import close_client, is_lite_uri
        from include.store.native_stderr import stderr_to_logging

        uri = self.uri_and_token[0]
        if is_lite_uri(uri):
            # Milvus Lite runs in this process: FAISS prints its index training on fd 2 (include.store.native_stderr).
            self._session.enter_context(stderr_to_logging())
        client = self.get_conn()
        # Closing releases a Lite directory for other processes (and flushes, which trains the index).
        self._session.callback(close_client, client, uri)
        return client

    def get_store(self):
        """The project's collections (`hn_chunks`, `hn_stories`) on this connection."""
        from include.store import ChunkStore

        return ChunkStore(self.conn)

    def close(self) -> None:
        """Close the client; for Milvus Lite this releases the directory for other processes."""
        self.__dict__.pop("conn", None)
        self._session.close()

    def __enter__(self) -> MilvusHook:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def test_connection(self) -> tuple[bool, str]:
        try:
            collections = self.conn.list_collections()
        except Exception as exc:  # noqa: BLE001 - the UI shows the message
            return False, str(exc)
        finally:
            self.close()
        return True, f"Connected to {self.uri_and_token[0]}: collections {collections}"
