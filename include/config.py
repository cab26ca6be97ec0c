"""Settings of the pipeline, with the defaults a scheduled run uses.

Everything Airflow-specific (Connections, Params) is read in the DAG and passed in here,
so the stages stay testable without a scheduler.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

HN_API_URL = "https://hacker-news.firebaseio.com/v0"
ALGOLIA_API_URL = "https://hn.algolia.com/api/v1"

USER_AGENT = "hn-rag-ingest/0.1 (Hacker News RAG ingestion; one request per story page)"

CHUNKS_COLLECTION = "hn_chunks"
STORIES_COLLECTION = "hn_stories"
JOBS_COLLECTION = "hn_jobs"  # long jobs that span runs (a reindex): their progress, kept in the store
EMBEDDING_DIM = 384


def data_dir() -> Path:
    """Where the default Milvus Lite database and staging live (`data/` in the project)."""
    return Path(os.environ.get("HN_INGEST_DATA_DIR", PROJECT_ROOT / "data"))


def default_milvus_uri() -> str:
    return str(data_dir() / "milvus.db")


def staging_url() -> str:
    """Base URL of the batch files between tasks: every worker must reach it (see include/pipeline/staging.py).

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


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in ("1", "true", "yes", "on")


def _env_seconds(name: str, default: str) -> tuple[float, ...]:
    return tuple(float(part) for part in os.environ.get(name, default).split(",") if part.strip())


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed page is tried again: after these waits in wall time, not on the next runs.

    A page that fails once waits `backoff[0]`, then `backoff[1]`...; after `len(backoff)` retries it
    stays failed. A site's `Retry-After` (bounded) replaces the wait when it asks for longer.
    """

    backoff: tuple[float, ...] = field(
        default_factory=lambda: _env_seconds("HN_INGEST_RETRY_BACKOFF", "60,600,3600,21600"))
    max_retry_after: float = 6 * 3600.0

    @property
    def max_attempts(self) -> int:
        return len(self.backoff) + 1

    def next_attempt_at(self, now: float, attempts: int, retry_after: float | None) -> int:
        """When attempt number `attempts + 1` may run; 0 when the attempts are spent."""
        if attempts >= self.max_attempts:
            return 0
        wait = self.backoff[attempts - 1]
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return int(now + wait + 0.999)


@dataclass(frozen=True)
class PolitenessConfig:
    """How hard the pipeline may press one site, across every worker (see include/crawl/host_gate.py)."""

    obey_robots: bool = field(default_factory=lambda: _env_flag("HN_INGEST_OBEY_ROBOTS", True))
    robots_ttl: float = field(default_factory=lambda: float(os.environ.get("HN_INGEST_ROBOTS_TTL", "86400")))
    robots_max_bytes: int = 512 * 1024  # what Google reads of a robots.txt
    host_concurrency: int = field(default_factory=lambda: int(os.environ.get("HN_INGEST_HOST_CONCURRENCY", "2")))
    host_rate: float = field(default_factory=lambda: float(os.environ.get("HN_INGEST_HOST_RATE", "1")))
    # A host that answered 429/503 gets no request for its Retry-After, up to this; its other stories
    # of the batch wait for it only up to `max_host_wait`, then go to the time-based retry.
    max_host_backoff: float = 600.0
    max_host_wait: float = 20.0
    # Shared limit state: Redis when set (CeleryExecutor: the broker every worker reaches), else files
    # on this machine (every LocalExecutor task and `dags test` run here).
    redis_url: str = field(default_factory=lambda: os.environ.get("HN_INGEST_REDIS_URL", "").strip())
    # Algolia's HN API allows ~10,000 requests an hour per address: 2.5/s (9,000/h) across every worker.
    algolia_rate: float = field(default_factory=lambda: float(os.environ.get("HN_INGEST_ALGOLIA_RATE", "2.5")))


@dataclass(frozen=True)
class ThreadConfig:
    """Comment threads: read with the story's page, then again as the thread grows.

    A thread is read when its story is ingested, then once each `refresh_after` step (seconds after the
    story was posted) has passed; a step already passed when the thread is read counts as done.
    """

    enabled: bool = field(default_factory=lambda: _env_flag("HN_INGEST_COMMENTS", True))
    refresh_after: tuple[float, ...] = field(
        default_factory=lambda: _env_seconds("HN_INGEST_THREAD_REFRESH", "3600,21600,86400,259200"))
    # Threads refreshed per run (new stories' first reads come with their pages, on top of these).
    refreshes_per_run: int = field(default_factory=lambda: int(os.environ.get("HN_INGEST_THREADS_PER_RUN", "20")))
    # New or changed comment chunks embedded per thread per run: a huge thread goes in slices.
    slice_chunks: int = field(default_factory=lambda: int(os.environ.get("HN_INGEST_THREAD_SLICE", "300")))
    max_comments: int = 5000  # a thread read by walking items stops here

    def steps_passed(self, posted_at: int, now: float) -> int:
        return sum(1 for step in self.refresh_after if posted_at + step <= now)


def pipeline_fingerprint(model_name: str, chunk_config: ChunkConfig) -> str:
    """Identifies what a page becomes: a page unchanged since it was stored under the same
    fingerprint needs no new chunks (conditional refetch); a new model or chunking needs them."""
    text = f"{model_name}|{chunk_config}|extraction-1"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
