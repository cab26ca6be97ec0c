"""Settings of the pipeline, with the defaults a scheduled run uses.

Everything Airflow-specific (Connections, Params) is read in the DAG and passed in here,
so the stages stay testable without a scheduler.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

HN_API_URL = "https://hacker-news.firebaseio.com/v0"
ALGOLIA_API_URL = "https://hn.algolia.com/api/v1"

USER_AGENT = "hn-rag-ingest/0.1 (Hacker News RAG ingestion; one request per story page)"

CHUNKS_COLLECTION = "hn_chunks"
STORIES_COLLECTION = "hn_stories"
EMBEDDING_DIM = 384


def data_dir() -> Path:
    """Where the default Milvus Lite database and staging live (`data/` in the project)."""
    return Path(os.environ.get("HN_INGEST_DATA_DIR", PROJECT_ROOT / "data"))


def default_milvus_uri() -> str:
    return str(data_dir() / "milvus.db")


def staging_url() -> str:
    """Base URL of the batch files between tasks: every worker must reach it (see include/staging.py).

    `HN_INGEST_STAGING_URL` is a contract other tooling sets; the default suits one machine.
    """
    return os.environ.get("HN_INGEST_STAGING_URL", "").strip() or (data_dir() / "staging").resolve().as_uri()


@dataclass(frozen=True)
class FetchConfig:
    """Limits that keep one hostile page from holding a task or filling memory."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_deadline: float = 30.0  # the whole fetch, redirects and body included
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    # For a local replay only (`HN_INGEST_ALLOW_LOOPBACK=true` on the workers); other private ranges
    # are always refused. A worker setting, not a Variable: anyone who can edit Variables in the UI
    # must not be able to point the fetcher at the workers' own loopback services.
    allow_loopback: bool = os.environ.get("HN_INGEST_ALLOW_LOOPBACK", "").strip().lower() in ("1", "true", "yes")
    user_agent: str = USER_AGENT
    concurrency: int = 8  # pages fetched at once within a batch


@dataclass(frozen=True)
class ChunkConfig:
    """Chunk sizes: characters steer `chunk_by_title`; tokens are the hard limit of the model."""

    max_characters: int = 1000
    new_after_n_chars: int = 800
    combine_text_under_n_chars: int = 200
    max_tokens: int = 256  # all-MiniLM-L6-v2's window, special tokens included
    max_chunks_per_story: int = 2000


@dataclass(frozen=True)
class EmbeddingConfig:
    # The bundled weights are used whenever this names all-MiniLM-L6-v2; any other name or path is
    # handed to sentence-transformers as is (a hub name needs internet access).
    model_name: str = os.environ.get("HN_INGEST_EMBEDDING_MODEL", "all-MiniLM-L6-v2")
    batch_size: int = 64


MAX_FAILED_ATTEMPTS = 3  # a failing page is tried this many runs, then left as failed
