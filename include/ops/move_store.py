"""Move the store from Milvus Lite to a Milvus server: every collection and stored field, nothing re-embedded.

    python -m include.ops.move_store --from data/milvus.db --to http://127.0.0.1:19530 [--token T]

The target's collections (`hn_chunks`, `hn_stories`, `hn_jobs`) are made by the project's schema code
(`StoreSchema.ensure_collections`: the IVF_FLAT index, BM25 where the server has it, the schema version).
Each collection is then read a page at a time and upserted by primary key, so the command holds one page,
not the store, and a rerun after a crash or a lost connection writes the same keys again and finishes the
job. The BM25 vectors are not copied: the target computes them from the text (a server before 2.5 has
none). Chunks go first, then story states, as the writer does, then jobs (a reindex counts its progress
from the states). At the end each collection must count as many rows on both sides; if not, the command
exits 1 and says which.

Pause `hn_ingest` first (or move again once it is paused): a write to the source during the copy may be
missed. Milvus Lite keeps the whole store in the memory of the process that opens it, this one included.
Then point `AIRFLOW_CONN_MILVUS_DEFAULT` at the server and raise the `milvus_writer` pool.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from include.config import CHUNKS_COLLECTION, STORIES_COLLECTION
from include.store.client import MilvusUnavailable, close_client, is_lite_uri, open_client
from include.store.collections import PRIMARY_KEY, WRITE_SLICE, count, pages
from include.store.schema import SCHEMA_VERSIONS, StoreSchema

log = logging.getLogger(__name__)

REQUIRED = (CHUNKS_COLLECTION, STORIES_COLLECTION)  # what makes a store a hn_ingest store
ORDER = [*REQUIRED, *(name for name in SCHEMA_VERSIONS if name not in REQUIRED)]  # chunks, states, then jobs
# Rows read per page (~200 MB of rows in memory). Each page of a Milvus Lite query iterator costs a pass over the
# whole collection (~3 s at 1M chunks), so few, large pages; pymilvus allows at most 16,384.
PAGE, MAX_PAGE = 16_000, 16_384


class MoveIncomplete(RuntimeError):
    """The target does not hold what the source holds (or the source is not a hn_ingest store)."""


def move_store(source, target, page: int = PAGE) -> dict[str, int]:
    """Copy every collection of the store from `source` to `target` (`pymilvus.MilvusClient`s).

    :param source: the store to read (a Milvus Lite directory's client).
    :param target: the store to write (a Milvus server's client); its collections are created when missing.
    :param page: rows read per page.
    :return: rows copied per collection. Raises `MoveIncomplete` when the counts differ afterwards.
    """
    missing = [name for name in REQUIRED if not source.has_collection(name)]
    if missing:
        raise MoveIncomplete(f"the source has no {' or '.join(missing)}: it is not a hn_ingest store")
    source_schema, target_schema = StoreSchema(source), StoreSchema(target)
    source_schema.ensure_collections()  # loads them (and migrates a store of an older release in place)
    target_schema.ensure_collections()
    copied = {}
    for name in ORDER:
        fields = target_schema.stored_fields(name)  # a function's output (BM25) is not among them
        absent = sorted(set(fields) - set(source_schema.stored_fields(name)))
        if absent:
            raise MoveIncomplete(f"{name} in the source lacks the fields {absent}: open it with this release first")
        copied[name], started = 0, time.monotonic()
        for rows in pages(source, name, every_row(source, name), fields, page):
            for start in range(0, len(rows), WRITE_SLICE):
                target.upsert(name, rows[start : start + WRITE_SLICE])
            copied[name] += len(rows)
            log.info("%s: %d rows copied (%.0f s)", name, copied[name], time.monotonic() - started)
    differences = []
    for name in ORDER:
        have, got = count(source, name), count(target, name)  # count(*): a key stored twice counts twice
        if have != got:
            why = "the target holds rows the source does not (an earlier store moved there?)" if got > have else \
                "rows are missing in the target (run the command again)"
            differences.append(f"{name}: {have} rows in the source, {got} in the target: {why}")
    if differences:
        raise MoveIncomplete("; ".join(differences))
    return copied


def every_row(client, name: str) -> str:
    """A filter every row matches (a query iterator needs one): on its primary key, an id or a name."""
    key = PRIMARY_KEY[name]
    field = next(f for f in client.describe_collection(name)["fields"] if f["name"] == key)
    return f'{key} != ""' if getattr(field["type"], "name", "") == "VARCHAR" else f"{key} >= 0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Copy the hn_ingest store from Milvus Lite to a Milvus server.")
    parser.add_argument("--from", dest="source", required=True, help="the Milvus Lite directory (data/milvus.db)")
    parser.add_argument("--to", dest="target", required=True, help="the server's URI, http://host:19530")
    parser.add_argument("--token", default="", help="the server's token (user:password), if it has authentication")
    parser.add_argument("--page", type=int, default=PAGE, help=f"rows read per page ({PAGE})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not 1 <= args.page <= MAX_PAGE:
        parser.error(f"--page must be between 1 and {MAX_PAGE}")
    if args.source == args.target:
        parser.error("--from and --to are the same store")
    if is_lite_uri(args.source) and not Path(args.source).is_dir():
        parser.error(f"no Milvus Lite store at {args.source}")
    started = time.monotonic()
    try:
        source = open_client(args.source)
        try:
            target = open_client(args.target, args.token)
            try:
                copied = move_store(source, target, args.page)
            finally:
                close_client(target, args.target)
        finally:
            close_client(source, args.source)
    except (MoveIncomplete, MilvusUnavailable) as exc:
        print(f"move_store: not moved: {exc}", file=sys.stderr)
        return 1
    print(f"moved {args.source} to {args.target} in {time.monotonic() - started:.0f} s: "
          + ", ".join(f"{name} {rows} rows" for name, rows in copied.items()) + "; counts equal on both sides")
    return 0


if __name__ == "__main__":
    sys.exit(main())
