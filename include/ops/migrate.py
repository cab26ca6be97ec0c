"""Bring the configured store to this release's schema (what the pipeline's first task would do).

    python -m include.ops.migrate          # make migrate

Readers (the status and search CLIs, the HTTP API) never migrate: against a store of an older release
they answer that it needs this step.
"""

from __future__ import annotations

import logging

from include.store import ChunkStore
from include.store.client import close_client, open_client, uri_from_environment
from include.store.schema import SCHEMA_VERSIONS


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    uri, token = uri_from_environment()
    client = open_client(uri, token)
    try:
        store = ChunkStore(client)
        store.schema.ensure_collections()
        versions = {name: store.schema.schema_version(name) for name in SCHEMA_VERSIONS}
    finally:
        close_client(client, uri)
    print(f"{uri}: " + ", ".join(f"{name} v{version}" for name, version in versions.items()))


if __name__ == "__main__":
    main()
