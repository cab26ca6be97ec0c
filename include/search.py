"""Search the ingested chunks from the command line.

    python -m include.search "how do I test frontend code coverage" -k 5

With Milvus Lite, the database is opened by one process at a time: this waits for a running write
task to finish (seconds). To search continuously while the scheduler runs, serve the directory with
`milvus-lite server` and point `AIRFLOW_CONN_MILVUS_DEFAULT` at it (see README).
"""

from __future__ import annotations

import argparse
import json

from include.config import EmbeddingConfig
from include.embedding_service import embed
from include.milvus_client import close_client, open_client, uri_from_environment
from include.milvus_store import ChunkStore


def search(query: str, k: int = 5) -> list[dict]:
    vector = embed([query], EmbeddingConfig())[0]  # the warm service, when a task has started it
    uri, token = uri_from_environment()
    client = open_client(uri, token)
    try:
        store = ChunkStore(client)
        store.ensure_collections()
        return store.search(vector, k)
    finally:
        close_client(client, uri)


def main() -> None:
    parser = argparse.ArgumentParser(description="Top matching chunks for a query.")
    parser.add_argument("query")
    parser.add_argument("-k", type=int, default=5, help="number of chunks to show")
    parser.add_argument("--json", action="store_true", help="print the hits as JSON")
    args = parser.parse_args()
    hits = search(args.query, args.k)
    if args.json:
        print(json.dumps(hits))
        return
    for rank, hit in enumerate(hits, 1):
        snippet = " ".join(hit["text"].split())[:300]
        print(f"{rank}. [{hit['score']:.3f}] {hit['title']}\n   {hit['url']}\n"
              f"   https://news.ycombinator.com/item?id={hit['story_id']} (chunk {hit['chunk_index']})\n   {snippet}\n")
    if not hits:
        print("no chunks stored yet")


if __name__ == "__main__":
    main()
