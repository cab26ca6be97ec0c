"""The collections' schemas and their versions: create them and the IVF_FLAT index once, migrate an
older store in place.

`hn_chunks` carries, besides the dense embedding (IVF_FLAT), its text fed to Milvus's BM25 function
into a sparse field for full-text search where the backend has it (Milvus Lite, Milvus 2.5+), and the
story's metadata on each chunk so searches can filter by it. `hn_stories` holds each story's state.
Each collection carries its schema version in the collection property `hn_ingest.schema_version`; its
fields say it too, and they decide when the property is missing (a Milvus 2.3 server forgets it on a restart).
"""

from __future__ import annotations

import logging
import os

from include.config import EMBEDDING_DIM
from include.store.collections import (
    CHUNKS_COLLECTION,
    CONSISTENCY,
    JOBS_COLLECTION,
    PRIMARY_KEY,
    STORIES_COLLECTION,
    WRITE_SLICE,
    domain_of,
    pages,
)

log = logging.getLogger(__name__)

# IVF lists: 128 suits up to ~1M chunks; about 4 * sqrt(expected chunks) beyond (docs/scaling.md). Read
# when the index is created, which happens once: a new value needs the index dropped and rebuilt.
IVF_NLIST = int(os.environ.get("HN_INGEST_IVF_NLIST", "128"))
FULL_TEXT_FIELD = "text_sparse"
VERSION_PROPERTY = "hn_ingest.schema_version"
# v1: the first release. v2: hn_stories gains next_attempt_at, etag, last_modified, fingerprint;
# hn_chunks gains BM25 full text and the story's kind, posted_at, points, comments and domain.
# v3: comment threads. hn_chunks gains comment_id, author, thread_path, content_hash; hn_stories gains
# posted_at, points, comments, the item's hash (edits) and the thread's read time, refresh steps done and
# comment chunk count.
# hn_jobs (v1) came with resumable reindexes; a store without it gains it empty.
SCHEMA_VERSIONS = {CHUNKS_COLLECTION: 3, STORIES_COLLECTION: 3, JOBS_COLLECTION: 1}
# The first field each version added: a collection that has it is at least that version.
VERSION_FIELDS = {CHUNKS_COLLECTION: {2: "kind", 3: "comment_id"}, STORIES_COLLECTION: {2: "next_attempt_at", 3: "item_hash"},
                  JOBS_COLLECTION: {}}
# Fields an older row lacks, and what they mean for it: no retry scheduled, no validators known; a
# chunk's story time and counts unknown (0) until the story is ingested again; a page chunk has no
# comment fields; the thread never read (so it is read by a later run). A chunk's domain is its URL's.
DEFAULTS = {
    STORIES_COLLECTION: {"next_attempt_at": 0, "etag": "", "last_modified": "", "fingerprint": "", "posted_at": 0,
                         "points": 0, "comments": 0, "thread_read_at": 0, "thread_steps": 0, "comment_chunks": 0,
                         "item_hash": ""},
    CHUNKS_COLLECTION: {"kind": "page", "posted_at": 0, "points": 0, "comments": 0, "comment_id": 0, "author": "",
                        "thread_path": "", "content_hash": ""},
    JOBS_COLLECTION: {},
}


class SchemaOutdated(RuntimeError):
    """The store is of an older release; a reader does not migrate it (a writer, or `make migrate`, does)."""


class StoreSchema:
    """Creates, versions and migrates `hn_chunks` and `hn_stories` through a `pymilvus.MilvusClient`."""

    def __init__(self, client) -> None:
        self.client = client
        self._full_text: bool | None = None

    def ensure_collections(self) -> None:
        """Create the collections and the IVF_FLAT index when missing, migrate an older schema in place;
        never drop data or rebuild an index that exists."""
        for name in SCHEMA_VERSIONS:
            self._finish_interrupted_migration(name)
            if not self.client.has_collection(name):
                self._create_new(name)
            elif (found := self.schema_version(name)) < SCHEMA_VERSIONS[name]:
                self._migrate_by_copy(name, found)
            self._ensure_indexes(name)
            self.client.load_collection(name)

    def load(self) -> None:
        """Make the collections readable in this process, migrating nothing: for readers (the status and
        search CLIs, the HTTP API). A store the pipeline has not written yet gains its empty collections;
        a store of an older release raises `SchemaOutdated` (the pipeline's next task migrates it)."""
        present = [name for name in SCHEMA_VERSIONS if self.client.has_collection(name)]
        for name in present:
            if (found := self.schema_version(name)) < SCHEMA_VERSIONS[name]:
                raise SchemaOutdated(f"{name} is at schema v{found} and this release reads v{SCHEMA_VERSIONS[name]}: "
                                     "it is migrated by the next hn_ingest task (or `make migrate`); readers never "
                                     "migrate it")
        for name in SCHEMA_VERSIONS:
            if name not in present:
                self._create_new(name)
            self._ensure_indexes(name)  # one just made by another process may not have its index yet
            self.client.load_collection(name)

    def _create_new(self, name: str) -> None:
        """Create `name` at this release's version. Another process (a task of another DAG, the status CLI)
        may create it at the same moment: the server then refuses the second creation, and theirs serves."""
        from pymilvus.exceptions import MilvusException

        try:
            self._create(name)
        except MilvusException:
            if not self.client.has_collection(name):
                raise
            log.info("%s was created by another process meanwhile", name)
            return
        self.set_schema_version(name, SCHEMA_VERSIONS[name])

    def has_full_text(self) -> bool:
        """Whether the chunks can be searched by BM25 (the backend had the function when they were created)."""
        if self._full_text is None:
            self._full_text = self._collection_has_full_text(CHUNKS_COLLECTION)
        return self._full_text

    def schema_version(self, name: str) -> int:
        """The collection's version: its version property, or what its fields show, whichever is higher.
        Without the fields' say a server that lost the property would copy the whole collection again."""
        described = self.client.describe_collection(name)
        fields = {f["name"] for f in described["fields"]}
        shown = max([1, *(v for v, field in VERSION_FIELDS[name].items() if field in fields)])
        return max(shown, int((described.get("properties") or {}).get(VERSION_PROPERTY, 1)))

    def set_schema_version(self, name: str, version: int) -> None:
        self.client.alter_collection_properties(name, properties={VERSION_PROPERTY: str(version)})

    def index_type(self) -> str:
        return self.client.describe_index(CHUNKS_COLLECTION, "embedding")["index_type"]

    def stored_fields(self, name: str) -> list[str]:
        """The fields a row is written with: a function's output (the BM25 sparse vector) is computed on
        insert, never copied."""
        described = self.client.describe_collection(name)
        generated = {f for fn in described.get("functions") or [] for f in fn["output_field_names"]}
        return [f["name"] for f in described["fields"] if f["name"] not in generated]

    def _create(self, name: str, collection: str | None = None) -> None:
        """Create `collection` (default `name`) with `name`'s schema. A server older than 2.5 has no BM25
        function and drops it silently from the schema: then the chunks go without full text."""
        collection = collection or name
        full_text = name == CHUNKS_COLLECTION
        schema = chunks_schema(full_text) if full_text else _SCHEMAS[name]()
        self.client.create_collection(collection, schema=schema, consistency_level=CONSISTENCY)
        if full_text and not self.client.describe_collection(collection).get("functions"):
            self.client.drop_collection(collection)
            log.warning("this Milvus server has no BM25 full-text search (Milvus 2.5+ or Milvus Lite has it): "
                        "%s is created for dense search only; text and hybrid searches fall back to dense", name)
            self.client.create_collection(collection, schema=chunks_schema(False), consistency_level=CONSISTENCY)
        self._full_text = None

    def _ensure_indexes(self, name: str, collection: str | None = None) -> None:
        collection = collection or name
        if name == CHUNKS_COLLECTION:
            self._ensure_index(collection, "embedding", "IVF_FLAT", "COSINE", {"nlist": IVF_NLIST})
            if self._collection_has_full_text(collection):
                self._ensure_index(collection, FULL_TEXT_FIELD, "SPARSE_INVERTED_INDEX", "BM25", {})
        else:
            self._ensure_index(collection, "unused_vector", "FLAT", "L2", {})  # hn_stories, hn_jobs

    def _ensure_index(self, collection: str, field: str, index_type: str, metric: str, params: dict) -> None:
        if field in self.client.list_indexes(collection, field_name=field):
            return
        index_params = self.client.prepare_index_params()
        index_params.add_index(field_name=field, index_name=field, index_type=index_type, metric_type=metric,
                               params=params)
        from pymilvus.exceptions import MilvusException

        try:
            self.client.create_index(collection, index_params)
        except MilvusException:
            if field not in self.client.list_indexes(collection, field_name=field):
                raise  # not another process's index made meanwhile: a real refusal

    def _collection_has_full_text(self, collection: str) -> bool:
        return bool(self.client.describe_collection(collection).get("functions"))

    def _migrate_by_copy(self, name: str, found: int) -> None:
        """Rebuild `name` with the current schema: copy every row into `<name>__migrating` with the new
        fields filled, check the count, then swap. Milvus Lite cannot add a field to a collection
        (and a 2.3 server neither), so a copy is the one path that works on every backend.

        A crash before the swap leaves the old collection whole (the copy is dropped and redone); a crash
        inside the swap leaves only the complete copy, which `_finish_interrupted_migration` renames.
        """
        target = SCHEMA_VERSIONS[name]
        temp = f"{name}__migrating"
        if self.client.has_collection(temp):
            self.client.drop_collection(temp)
        self.client.load_collection(name)
        fields = self.stored_fields(name)
        log.info("migrating %s from schema v%d to v%d", name, found, target)
        self._create(name, temp)
        self._ensure_indexes(name, temp)
        self.client.load_collection(temp)
        read = 0
        # Streamed a page at a time: a chunks collection with its vectors need not fit in memory.
        for page in pages(self.client, name, f"{PRIMARY_KEY[name]} >= 0", fields, WRITE_SLICE):
            self.client.insert(temp, [with_new_fields(name, row) for row in page])
            read += len(page)
        copied = self.client.query(temp, filter="", output_fields=["count(*)"], consistency_level=CONSISTENCY)
        if int(copied[0]["count(*)"]) != read:
            raise RuntimeError(f"migration of {name} copied {copied[0]['count(*)']} of {read} rows; "
                               f"{name} is untouched, {temp} can be dropped")
        self.set_schema_version(temp, target)
        self.client.drop_collection(name)
        self.client.rename_collection(temp, name)
        self._full_text = None
        log.info("migrated %s to schema v%d: %d rows kept", name, target, read)

    def _finish_interrupted_migration(self, name: str) -> None:
        temp = f"{name}__migrating"
        if self.client.has_collection(temp) and not self.client.has_collection(name):
            log.warning("finishing an interrupted migration: %s becomes %s", temp, name)
            self.client.rename_collection(temp, name)


def with_new_fields(name: str, row: dict) -> dict:
    """`row` with the fields its schema version lacks, at their defaults (`DEFAULTS`)."""
    filled = {**DEFAULTS[name], **row}
    if name == CHUNKS_COLLECTION and "domain" not in row:
        filled["domain"] = domain_of(row.get("url", ""))
    return filled


def chunks_schema(full_text: bool = True):
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, description="Hacker News story chunks")
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("story_id", DataType.INT64)
    schema.add_field("chunk_index", DataType.INT64)
    schema.add_field("title", DataType.VARCHAR, max_length=2048)
    schema.add_field("url", DataType.VARCHAR, max_length=4096)
    # The standard analyzer (words, lowercased) is the one every BM25 backend has; Lite has no stemmer.
    schema.add_field("text", DataType.VARCHAR, max_length=65535, enable_analyzer=full_text)
    schema.add_field("ingested_at", DataType.INT64)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=EMBEDDING_DIM)
    schema.add_field("kind", DataType.VARCHAR, max_length=16)  # "page": the story's page or its own text
    schema.add_field("posted_at", DataType.INT64)  # the story's creation time, Unix seconds
    schema.add_field("points", DataType.INT64)
    schema.add_field("comments", DataType.INT64)
    schema.add_field("domain", DataType.VARCHAR, max_length=256)
    schema.add_field("comment_id", DataType.INT64)  # 0 on a page chunk
    schema.add_field("author", DataType.VARCHAR, max_length=256)
    schema.add_field("thread_path", DataType.VARCHAR, max_length=4096)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=32)
    if full_text:
        schema.add_field(FULL_TEXT_FIELD, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="text_bm25", function_type=FunctionType.BM25,
                                     input_field_names=["text"], output_field_names=[FULL_TEXT_FIELD]))
    return schema


def stories_schema():
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, description="Ingestion state per story")
    schema.add_field("story_id", DataType.INT64, is_primary=True)
    schema.add_field("status", DataType.VARCHAR, max_length=16)
    schema.add_field("stage", DataType.VARCHAR, max_length=16)
    schema.add_field("reason", DataType.VARCHAR, max_length=4096)
    schema.add_field("attempts", DataType.INT64)
    schema.add_field("chunk_count", DataType.INT64)
    schema.add_field("title", DataType.VARCHAR, max_length=2048)
    schema.add_field("url", DataType.VARCHAR, max_length=4096)
    schema.add_field("updated_at", DataType.INT64)
    schema.add_field("next_attempt_at", DataType.INT64)  # Unix seconds; 0: none scheduled
    schema.add_field("etag", DataType.VARCHAR, max_length=1024)
    schema.add_field("last_modified", DataType.VARCHAR, max_length=128)
    schema.add_field("fingerprint", DataType.VARCHAR, max_length=64)
    schema.add_field("posted_at", DataType.INT64)
    schema.add_field("points", DataType.INT64)
    schema.add_field("comments", DataType.INT64)
    schema.add_field("thread_read_at", DataType.INT64)  # Unix seconds of the last complete read; 0: due
    schema.add_field("thread_steps", DataType.INT64)  # ThreadConfig.refresh_after steps passed at that read
    schema.add_field("comment_chunks", DataType.INT64)
    schema.add_field("item_hash", DataType.VARCHAR, max_length=32)
    # Milvus requires a vector field in every collection; this one is never searched.
    schema.add_field("unused_vector", DataType.FLOAT_VECTOR, dim=2)
    return schema


def jobs_schema():
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, description="Jobs that span runs (a reindex)")
    schema.add_field("name", DataType.VARCHAR, max_length=64, is_primary=True)
    schema.add_field("state", DataType.VARCHAR, max_length=8192)  # JSON: include.store.jobs
    schema.add_field("updated_at", DataType.INT64)
    schema.add_field("unused_vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires a vector field
    return schema


_SCHEMAS = {CHUNKS_COLLECTION: chunks_schema, STORIES_COLLECTION: stories_schema, JOBS_COLLECTION: jobs_schema}
