"""An operator that upserts rows into a Milvus collection, given inline or as a file in object storage."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from milvus_provider.hooks.milvus import MilvusHook

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath


def read_rows(path: str | ObjectStoragePath) -> Iterator[dict[str, Any]]:
    """The row dicts of a JSON array, or of JSON lines (one object a line), read through object storage.

    JSON lines are read one line at a time, so a large file is never held in memory at once.

    :param path: a URL Airflow's object storage opens: ``s3://conn_id@bucket/rows.jsonl``, ``file:///...``.
    """
    from airflow.sdk import ObjectStoragePath

    source = path if isinstance(path, ObjectStoragePath) else ObjectStoragePath(path)
    with source.open("r", encoding="utf-8") as handle:
        first = handle.read(1)
        while first.isspace():
            first = handle.read(1)
        handle.seek(0)
        if first == "[":
            lines = enumerate(json.load(handle), 1)
            where = "item"
        else:
            lines = ((number, json.loads(line)) for number, line in enumerate(handle, 1) if line.strip())
            where = "line"
        for number, row in lines:
            if not isinstance(row, Mapping):
                raise ValueError(f"{source}: {where} {number} is not a JSON object: {str(row)[:80]}")
            yield dict(row)


class MilvusUpsertOperator(BaseOperator):
    """Upsert rows into a Milvus collection; returns (and pushes to XCom) the number of rows written.

    Give the rows inline (`rows`, for example another task's output) or as a file (`path`), not both.

    :param collection_name: the collection, which must exist. (templated)
    :param rows: row dicts, field name to value. (templated)
    :param path: an object-storage URL of a JSON array or a JSON-lines file of row dicts. (templated)
    :param batch_size: rows per upsert request.
    :param milvus_conn_id: the Milvus connection.
    """

    template_fields: Sequence[str] = ("collection_name", "rows", "path")

    def __init__(self, *, collection_name: str, rows: list[dict[str, Any]] | None = None,
                 path: str | ObjectStoragePath | None = None, batch_size: int = 1000,
                 milvus_conn_id: str = MilvusHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if (rows is None) == (path is None):
            raise ValueError("MilvusUpsertOperator takes exactly one of rows and path")
        self.collection_name = collection_name
        self.rows = rows
        self.path = path
        self.batch_size = batch_size
        self.milvus_conn_id = milvus_conn_id

    @cached_property
    def hook(self) -> MilvusHook:
        return MilvusHook(milvus_conn_id=self.milvus_conn_id)

    def execute(self, context: Context) -> int:
        if isinstance(self.rows, str):
            raise TypeError("rows rendered as a string: pass the list itself (another task's output) or set "
                            "render_template_as_native_obj=True on the DAG")
        rows = read_rows(self.path) if self.rows is None else self.rows
        with self.hook as hook:
            written = hook.upsert(self.collection_name, rows, batch_size=self.batch_size)
        self.log.info("%d rows upserted into %s", written, self.collection_name)
        return written
