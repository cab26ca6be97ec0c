"""The project's Milvus hook: the provider's (providers/milvus) with this project's defaults and store."""

from __future__ import annotations

from contextlib import ExitStack
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowNotFoundException
from milvus_provider.hooks.milvus import MilvusHook as ProviderMilvusHook

from hn_providers.hosts import LOCAL_EXECUTORS, configured_executor

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from pymilvus import MilvusClient


class MilvusHook(ProviderMilvusHook):
    """The provider's `MilvusHook` (connection type ``milvus``), and what is about this project.

    - Without a ``milvus_default`` connection (or with an empty URI), the project's Milvus Lite database
      ``data/milvus.db`` is used, but only where tasks run on this machine (LocalExecutor, ``airflow dags
      test``): under a distributed executor each worker would write a Lite file of its own, so a missing
      connection is an error there.
    - Opening a Milvus Lite directory held by another process waits for it (extra ``lock_timeout``,
      seconds, 60), and failures raise `MilvusUnavailable` so the task fails and Airflow retries it
      (``include/store/client.py``).
    - While a Lite client is open, what FAISS prints on stderr goes to logging (``include/store/native_stderr.py``).
    - `get_store()` is the project's `ChunkStore` (``hn_chunks``, ``hn_stories``) on the hook's client.

    :param milvus_conn_id: the Airflow connection to use.
    :param lock_timeout: overrides the connection's ``lock_timeout``.
    """

    def __init__(self, milvus_conn_id: str = ProviderMilvusHook.default_conn_name, lock_timeout: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(milvus_conn_id, **kwargs)
        self._lock_timeout = lock_timeout
        self._session = ExitStack()  # what `create_client` set up for the client, undone by close()

    @cached_property
    def connection(self) -> Connection | None:
        """The Airflow connection, or None when it is not defined (the local default)."""
        try:
            return self.get_connection(self.milvus_conn_id)
        except AirflowNotFoundException:
            executor = configured_executor()
            if executor not in LOCAL_EXECUTORS:
                raise AirflowNotFoundException(
                    f"No Milvus connection {self.milvus_conn_id!r}. With {executor}, tasks run on several hosts "
                    f"and the local default (a Milvus Lite file per host) would split the store: set "
                    f"AIRFLOW_CONN_{self.milvus_conn_id.upper()} to a Milvus server, for example "
                    f"'{{\"conn_type\": \"milvus\", \"host\": \"http://milvus:19530\"}}'") from None
            self.log.info("No connection %r: using the project's Milvus Lite database", self.milvus_conn_id)
            return None

    @cached_property
    def client_kwargs(self) -> dict[str, str]:
        """The connection's client arguments; without a connection or a URI, the project's Lite file."""
        if self.connection is None or not (self.connection.host or "").strip():
            from include.config import default_milvus_uri

            return {"uri": default_milvus_uri(), "token": "", "db_name": ""}
        return super().client_kwargs

    @property
    def uri_and_token(self) -> tuple[str, str]:
        return self.client_kwargs["uri"], self.client_kwargs["token"]

    @property
    def lock_timeout(self) -> float:
        if self._lock_timeout is not None:
            return self._lock_timeout
        extra = self.connection.extra_dejson if self.connection is not None else {}
        return float(extra.get("lock_timeout", 60.0))

    def create_client(self, uri: str, token: str = "", db_name: str = "") -> MilvusClient:
        """A client through the project's `open_client`: raises `MilvusUnavailable` so the task fails and retries."""
        from include.store.client import is_lite_uri, open_client
        from include.store.native_stderr import stderr_to_logging

        if is_lite_uri(uri):
            # Milvus Lite runs in this process: FAISS prints its index training on fd 2, also while closing.
            self._session.enter_context(stderr_to_logging())
        try:
            return open_client(uri, token, lock_timeout=self.lock_timeout, db_name=db_name)
        except BaseException:
            self._session.close()
            raise

    def close(self) -> None:
        """Close the client (flushing a Lite segment trains its index), then stop routing stderr."""
        try:
            super().close()
        finally:
            self._session.close()

    def get_store(self):
        """The project's collections (`hn_chunks`, `hn_stories`) on this connection."""
        from include.store import ChunkStore

        return ChunkStore(self.conn)
