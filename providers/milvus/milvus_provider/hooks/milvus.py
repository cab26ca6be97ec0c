"""A hook for Milvus: a server (or Zilliz Cloud) by URL, or Milvus Lite by the path of its directory."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import cached_property
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

from milvus_provider.get_provider_info import CONNECTION_FIELDS, FIELD_BEHAVIOUR

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from pymilvus import MilvusClient

SERVER_SCHEMES = ("http", "https", "tcp", "unix")

# Each client gets its own gRPC channel (`dedicated=True`), which `close()` closes: pymilvus otherwise
# shares one per process and address and leaves it open after `close()`, pinging every 10 s, and a
# Python gRPC server (`milvus-lite server`, the one behind a Lite path) answers an idle pinger with
# GOAWAY too_many_pings, so the process's next client can fail. No pings while idle.
QUIET_KEEPALIVE = {"grpc.keepalive_permit_without_calls": 0, "grpc.keepalive_time_ms": 600_000}

# Milvus Lite serves a directory from a gRPC server in this process, shared by every client of that
# path; the last hook to close releases it (and the directory's lock, for other processes).
_lite_users: Counter[str] = Counter()
_lite_users_lock = threading.Lock()


def is_lite_uri(uri: str) -> bool:
    """True for a Milvus Lite directory (a local path), False for a server URL."""
    return urlsplit(uri).scheme not in SERVER_SCHEMES


def lite_path(uri: str) -> str:
    """The absolute path of a Milvus Lite directory: the key under which its in-process server runs."""
    if not uri.endswith(".db"):
        raise ValueError(f"a Milvus Lite path must end in .db (got {uri!r}); a server URI starts with http://")
    return os.path.realpath(uri)


def _release_lite(path: str) -> None:
    with _lite_users_lock:
        _lite_users[path] -= 1
        last = _lite_users[path] <= 0
        if last:
            del _lite_users[path]
    if last:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)


class MilvusHook(BaseHook):
    """Owns one `pymilvus.MilvusClient` for an Airflow connection of type ``milvus``.

    The connection's host is the URI (``http://host:19530``, ``https://...`` for Zilliz Cloud, or a
    Milvus Lite directory ending in ``.db``), its password the token (``user:password`` or an API key),
    and the extra ``db_name`` the database. The client is opened on first use (`conn`, `get_conn()`)
    and closed by `close()`, or at the end of a ``with`` block; closing a Milvus Lite client releases
    the directory for other processes.

    :param milvus_conn_id: the Airflow connection to use.
    :param timeout: seconds to wait for the server when connecting (pymilvus' default when None).
    """

    conn_name_attr = "milvus_conn_id"
    default_conn_name = "milvus_default"
    conn_type = "milvus"
    hook_name = "Milvus"

    def __init__(self, milvus_conn_id: str = default_conn_name, *, timeout: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.milvus_conn_id = milvus_conn_id
        self.timeout = timeout
        self._lite_path: str | None = None  # set while `conn` holds a Milvus Lite directory

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The standard fields of the connection form (Airflow before 3.2; later ones read the provider info)."""
        return {key.replace("-", "_"): value for key, value in FIELD_BEHAVIOUR.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extra fields of the connection form (Airflow before 3.2; later ones read the provider info)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import StringField

        return {name: StringField(lazy_gettext(field["label"]), widget=BS3TextFieldWidget(),
                                  description=field.get("description", ""))
                for name, field in CONNECTION_FIELDS.items()}

    @cached_property
    def connection(self) -> Connection:
        """The Airflow connection `milvus_conn_id`."""
        return self.get_connection(self.milvus_conn_id)

    @cached_property
    def client_kwargs(self) -> dict[str, str]:
        """The connection as `MilvusClient` arguments: ``uri``, ``token`` and ``db_name``."""
        conn = self.connection
        uri = (conn.host or "").strip()
        if not uri:
            raise ValueError(f"the Milvus connection {self.milvus_conn_id!r} has no URI (its host field): "
                             f"set http://host:19530 or a Milvus Lite path ending in .db")
        extra = conn.extra_dejson
        # Forms of Airflow 2 stored extra fields under a prefixed key.
        db_name = extra.get("db_name") or extra.get("extra__milvus__db_name") or ""
        return {"uri": uri, "token": conn.password or "", "db_name": db_name}

    def create_client(self, uri: str, token: str = "", db_name: str = "") -> MilvusClient:
        """A new client; subclasses may open it differently (wait for a lock, route logs).

        :param uri: a server URL, or a Milvus Lite directory ending in ``.db``.
        :param token: ``user:password`` or an API key; empty without authentication.
        :param db_name: the database; empty for the default one.
        """
        from pymilvus import MilvusClient

        return MilvusClient(uri=lite_path(uri) if is_lite_uri(uri) else uri, token=token, db_name=db_name,
                            timeout=self.timeout, dedicated=True, grpc_options=QUIET_KEEPALIVE)

    @cached_property
    def conn(self) -> MilvusClient:
        """The hook's client, opened on first use and kept until `close()`."""
        kwargs = self.client_kwargs
        client = self.create_client(**kwargs)
        if is_lite_uri(kwargs["uri"]):
            self._lite_path = lite_path(kwargs["uri"])
            with _lite_users_lock:
                _lite_users[self._lite_path] += 1
        return client

    def get_conn(self) -> MilvusClient:
        """The hook's client (`conn`): the same one on every call until `close()`."""
        return self.conn

    def close(self) -> None:
        """Close the client; the next use opens a new one. For Milvus Lite, release the directory."""
        client = self.__dict__.pop("conn", None)
        if client is None:
            return
        try:
            client.close()
        finally:
            if self._lite_path is not None:
                path, self._lite_path = self._lite_path, None
                _release_lite(path)

    def __enter__(self) -> MilvusHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def test_connection(self) -> tuple[bool, str]:
        """Connect and list the collections: (success, the message the UI's Test button shows)."""
        try:
            uri = self.client_kwargs["uri"]
        except Exception as exc:  # noqa: BLE001 - every failure is a message for the UI
            return False, str(exc)
        opened_here = "conn" not in self.__dict__
        try:
            collections = self.list_collections()
            version = self.conn.get_server_version()
        except Exception as exc:  # noqa: BLE001
            # pymilvus' exceptions keep the server's words in `message`; their str() wraps it in a repr.
            return False, f"Cannot list the collections of Milvus at {uri}: {getattr(exc, 'message', None) or exc}"
        finally:
            if opened_here:
                self.close()
        return True, f"Connected to Milvus {version} at {uri}: {len(collections)} collection(s)"

    def list_collections(self) -> list[str]:
        """The names of the collections in the connection's database."""
        return list(self.conn.list_collections())

    def has_collection(self, collection_name: str) -> bool:
        """Whether the collection exists.

        :param collection_name: the collection.
        """
        return bool(self.conn.has_collection(collection_name))

    def upsert(self, collection_name: str, rows: Iterable[Mapping[str, Any]], batch_size: int = 1000,
               partition_name: str = "") -> int:
        """Insert the rows, replacing those whose primary key exists; the number of rows written.

        :param collection_name: the collection, which must exist.
        :param rows: row dicts (field name to value), any iterable: it is read one batch at a time.
        :param batch_size: rows per request.
        :param partition_name: the partition; empty for the default one.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 (got {batch_size})")
        written = 0
        batches = iter(rows)
        while batch := [dict(row) for row in islice(batches, batch_size)]:
            written += self.conn.upsert(collection_name, batch, partition_name=partition_name)["upsert_count"]
            self.log.debug("%s: %d rows upserted so far", collection_name, written)
        return written

    def count(self, collection_name: str, filter: str = "") -> int:
        """How many rows the collection holds (matching `filter`), including writes just made.

        Loads the collection first if it is not loaded (a query needs it; Milvus Lite loads nothing
        when it opens a directory).

        :param collection_name: the collection.
        :param filter: a boolean expression such as ``story_id == 3``; empty for all rows.
        """
        from pymilvus.client.types import LoadState

        if self.conn.get_load_state(collection_name)["state"] != LoadState.Loaded:
            self.conn.load_collection(collection_name)
        rows = self.conn.query(collection_name, filter=filter, output_fields=["count(*)"],
                               consistency_level="Strong")
        return int(rows[0]["count(*)"])
