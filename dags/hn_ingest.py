"""
### hn_ingest: Hacker News stories → Unstructured chunks → MiniLM vectors → Milvus

Every 15 seconds (`HN_INGEST_SCHEDULE_SECONDS`) this DAG finds Hacker News stories it has not ingested yet, fetches each story's
page (or takes the text of an Ask HN-style post), keeps the page's main content, partitions and chunks
it with Unstructured (every chunk fits the model's 256-token window), embeds the chunks with
all-MiniLM-L6-v2 and upserts them into the Milvus collection `hn_chunks`.

**Stages** (mapped over micro-batches of stories, named `batch N: K stories first-last`):
`discover_stories` → `extract_batch` (fetch, partition, chunk; the comment thread) → `embed_batch` → `write_batch` → `report_run`.

**Comment threads.** Each story's thread is read with its page and stored as chunks of kind `comment`
(author, time, thread path, the words of the comment replied to), then read again 1 h, 6 h, 24 h and
72 h after posting (`HN_INGEST_THREAD_REFRESH`, 20 threads per run): only new or edited comments are
embedded, deleted ones removed; a huge thread goes 300 chunks per run in batches of its own
(`batch N: K threads first-last`).

**Following HN.** Stored stories listed by `/v0/updates.json` and those whose thread is due are
compared with HN: an edited story is ingested again in place; a killed or deleted one loses its rows
and its state becomes `removed` with the reason.

**State.** Each story's status (ingested / skipped / failed, with the reason) is kept in the Milvus
collection `hn_stories`. Stories already ingested are never fetched again by a scheduled run. A page
that fails (404, timeout, too big, not HTML, unparsable, 429) is recorded and retried after 1 min,
10 min, 1 h and 6 h (`HN_INGEST_RETRY_BACKOFF`; longer when the site's Retry-After asks); it never
fails its batch. An unreachable HN API or Milvus fails the task, which Airflow retries.

**Politeness.** robots.txt is obeyed (a disallowed page is skipped with the reason) and cached for a
day in the staging base; each site gets at most 2 requests at once and 1 per second across every
worker (`HN_INGEST_HOST_CONCURRENCY`, `HN_INGEST_HOST_RATE`, or its Crawl-delay when stricter).

**Idle runs.** A scheduled run with nothing new waits on the triggerer (no worker slot) until its
next run is due; a story published meanwhile resumes it, otherwise the run ends skipped (all tasks
pink in the grid). `python -m include.ops.metadata_cleanup` (run daily by `make scheduler`)
keeps a week of run history in the metadata DB.

**Params**
- `reindex` (bool): re-ingest every story known to the store (after a model or chunking change): a job
  kept in the store. This run takes its first slice of `HN_INGEST_REINDEX_PER_RUN` (50) stories after its
  new ones; the companion DAG `hn_reindex` takes the next slices until all are done, in runs of its own
  so that this DAG's runs stay short; resumable, with progress in the run log and `/status`.
- `cancel_reindex` (bool): stop a running reindex.
  Rows are replaced in place: the row count does not grow.
- `max_stories` (int or empty): cap on the stories this run takes.
- `batch_size` (int): stories per mapped task.
- `conditional` (bool, default true): a refetch (reindex) sends the page's stored ETag/Last-Modified, and
  a page the site reports unchanged (304) keeps its chunks: nothing is embedded. Only pages stored by
  the same model and chunking settings are asked conditionally. False re-downloads and re-embeds all.

**Backfill** goes through the companion DAG `hn_backfill` (same tasks, one run per hour of history):
`airflow backfill create --dag-id hn_backfill --from-date 2020-12-29T00:00:00+00:00 --to-date 2020-12-29T23:00:00+00:00`.

**Connections**: `milvus_default` (host = Milvus Lite path or server URI; required under the
CeleryExecutor), `hacker_news_default` (host = Firebase base URL; extra `algolia_url`). Worker setting
`HN_INGEST_ALLOW_LOOPBACK=true` allows pages on 127.0.0.1 for a local replay.

**Serving**: every `write_batch` updates the Asset `hn_chunks` (schedule a DAG on it for fresh data).
The api-server serves `/hn-ingest/api/search|stories/<id>|status` and the view "HN ingestion" (Browse
menu). Metrics `hn_ingest.stories.<status>`, `hn_ingest.chunks_written`, `hn_ingest.stage.<stage>` go
to StatsD/OpenTelemetry when `[metrics]` enables them. A task that fails for good logs an ERROR alert
and POSTs it to the webhook of connection `hn_ingest_alerts` when set.

**Many workers**: batches move between tasks under `HN_INGEST_STAGING_URL` (Airflow object storage,
default `data/staging`), never on a worker's disk; every `write_batch` of every run takes a slot of
the pool `milvus_writer`; `HN_INGEST_EMBEDDING_QUEUE` sends `embed_batch` to a Celery queue of its own.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.definitions.timetables.interval import DeltaDataIntervalTimetable
from hn_providers.assets import HN_CHUNKS
from hn_providers.hooks.hacker_news import HackerNewsHook
from hn_providers.notifiers.failure import IngestFailureNotifier
from hn_providers.operators.discover import DiscoverStoriesOperator
from hn_providers.operators.milvus import MilvusIngestOperator

BATCH_LABEL = "{{ batch_label }}"
# Write tasks share this pool (`airflow pools set milvus_writer 1 ...`; more slots for a Milvus server).
WRITER_POOL = os.environ.get("HN_INGEST_WRITER_POOL", "milvus_writer")
# A Celery queue for embed_batch (for example GPU workers: `airflow celery worker -q embedding`).
EMBEDDING_QUEUE = {"queue": q} if (q := os.environ.get("HN_INGEST_EMBEDDING_QUEUE", "").strip()) else {}


# CPU niceness of a reindex batch's extract and embed processes (0-19; 0: as the live ones).
BACKGROUND_NICENESS = int(os.environ.get("HN_INGEST_REINDEX_NICENESS", "10"))
# hn_backfill's window: one run per this many seconds of history.
BACKFILL_WINDOW_SECONDS = int(os.environ.get("HN_INGEST_BACKFILL_WINDOW_SECONDS", "3600"))
DEFAULT_ARGS = {
    # Later stages first: a batch whose vectors are ready is written before another batch starts
    # embedding, so stories land batch by batch instead of all at the end of a run.
    "weight_rule": "upstream",
    # Above hn_reindex's tasks (weight 1) for an executor slot or a writer-pool slot: live stories first.
    "priority_weight": 10,
    "retries": 3,
    "retry_delay": timedelta(seconds=10),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
    "execution_timeout": timedelta(minutes=30),
    # Once a task's retries are spent: an ERROR line, and a webhook POST when `hn_ingest_alerts` is set.
    "on_failure_callback": IngestFailureNotifier(),
}
BACKFILL_DOC = """
### hn_backfill: the stories of past windows of Hacker News, one run per hour of history

The companion of `hn_ingest` (same tasks, same store, same writer pool): each run takes every story
created in its data interval (an hour, `HN_INGEST_BACKFILL_WINDOW_SECONDS`), found through Algolia's
`search_by_date` in one request (a window with more than 1,000 stories is split), within Algolia's
request budget shared by every worker (`HN_INGEST_ALGOLIA_RATE`, 2.5/s), minus the stories already
ingested or skipped, cut into mapped batches. A year of history is 8,760 runs, not 2.1 million.

    airflow backfill create --dag-id hn_backfill --from-date 2020-12-29T00:00:00+00:00 --to-date 2020-12-29T23:00:00+00:00

(`--to-date` is the last window's start, inclusive; the UI's backfill dialog does the same.) A rerun
or a resumed backfill skips what is done. `reindex=true` re-ingests each window's stories, done or not.
Unpaused, it also runs once an hour for the hour before: a sweep that catches any story the live DAG
missed (for example while it was stopped longer than `/v0/newstories.json`'s 500 stories).
"""


REINDEX_DOC = """
### hn_reindex: the slices of a running reindex, in runs of their own

A reindex (begun by a run of `hn_ingest` with `reindex=true`) is a job kept in the store. Each run of
this DAG (every `HN_INGEST_REINDEX_SCHEDULE_SECONDS`, 30 s, one at a time) takes its next slice:
`HN_INGEST_REINDEX_PER_RUN` stories in batches of `HN_INGEST_REINDEX_BATCH_SIZE`, in story-id order, and
re-ingests them through the same tasks, store and writer pool as `hn_ingest`. With no reindex running, a
run ends at once, skipped. Its tasks have the lowest priority and at most `HN_INGEST_REINDEX_MAX_TASKS` (2)
run at once, so `hn_ingest`'s live runs never wait behind a slice for a slot.

A slice whose batch fails whole is not taken again at once: the job goes on with the stories after it and
comes back to what is left at the end of each pass; after 3 passes what is still left is given up and
counted (`/status`: `given_up`). `cancel_reindex=true` (here or on `hn_ingest`) stops the job. Progress
(done / total, time left) is in each run's log, `/status` and the ingestion view.

Without a scheduler (`airflow dags test`), `make reindex` runs it until the job is done.
"""


def run_params(reindex_description: str) -> dict:
    """The run parameters of both DAGs (the trigger form in the UI, or `-c` JSON)."""
    return {
        "reindex": Param(False, type="boolean", description=reindex_description),
        "max_stories": Param(None, type=["null", "integer"], minimum=1,
                             description="Take at most this many stories in this run (empty: no cap)."),
        "batch_size": Param(10, type="integer", minimum=1, maximum=500,
                            description="Stories per mapped task (one extract, embed and write each)."),
        "conditional": Param(True, type="boolean",
                             description="Refetch stored pages with their ETag/Last-Modified: a page the site "
                                         "reports unchanged (304) keeps its chunks. Off: download and re-embed all."),
    }


def _label_mapped_instance(batch: dict) -> None:
    get_current_context()["batch_label"] = batch["label"]
    if batch.get("background"):
        # A reindex batch: live batches on this host get the CPU first (the pool and priority weights
        # only order who starts; two cores are shared by whatever runs).
        os.nice(BACKGROUND_NICENESS)


@task(map_index_template=BATCH_LABEL)
def extract_batch(batch: dict) -> dict:
    from include.config import ChunkConfig, EmbeddingConfig, FetchConfig, ThreadConfig
    from include.crawl.polite_fetch import Validators
    from include.parse.chunking import TokenCounter
    from include.pipeline.extract import extract_batch as extract
    from include.pipeline.extract import extract_threads
    from include.pipeline.staging import batch_key, read_json, write_extracted

    _label_mapped_instance(batch)
    counter = TokenCounter(EmbeddingConfig().model_name)
    known = {int(i): Validators(*pair) for i, pair in batch.get("validators", {}).items()}
    hn = HackerNewsHook().get_conn()
    extracted = extract(batch["story_ids"], hn, FetchConfig(), ChunkConfig(), counter, known)
    if batch.get("thread_ids"):
        stored = {int(i): {int(k): h for k, h in hashes.items()}
                  for i, hashes in read_json(batch["stored_threads"]).items()}
        extract_threads(extracted, batch["thread_ids"], stored, hn, ThreadConfig(), ChunkConfig(), counter)
    key = batch_key(get_current_context()["run_id"], batch["number"], ".json")
    return {**batch, "extracted": write_extracted(key, extracted), "seconds": extracted.seconds}

@task(map_index_template=BATCH_LABEL, **EMBEDDING_QUEUE)
def embed_batch(batch: dict) -> dict:
    from include.embed.service import embed
    from include.parse.chunking import embedding_input
    from include.pipeline.staging import read_extracted, write_vectors

    _label_mapped_instance(batch)
    chunks = read_extracted(batch["extracted"]).chunks
    started = time.monotonic()
    vectors = embed([embedding_input(c.title, c.text) for c in chunks], background=bool(batch.get("background")))
    seconds = {**batch["seconds"], "embed": time.monotonic() - started}
    key = write_vectors(batch["extracted"].removesuffix(".json") + ".npy", vectors)
    print(f"{batch['label']}: embedded {len(chunks)} chunks in {seconds['embed']:.1f} s")
    return {**batch, "vectors": key, "seconds": seconds}

@task
def report_run(results: list[dict]) -> dict:
    from include.crawl.host_gate import prune_idle_hosts
    from include.ops.metrics import emit_run_metrics
    from include.pipeline.staging import prune, remove_run

    # One request for every batch's result; iterating would fetch them one by one and end on a
    # 404 one past the last, which the task log shows as an ERROR "XCom not found".
    results = list(results[:])
    totals: dict[str, int] = {}
    for result in results:
        for status, count in result["statuses"].items():
            totals[status] = totals.get(status, 0) + count
        for problem in result["problems"]:
            print(problem)
    seconds: dict[str, float] = {}
    for result in results:
        for stage, value in result.get("seconds", {}).items():
            seconds[stage] = round(seconds.get(stage, 0.0) + value, 3)
    summary = {"chunks_written": sum(r["chunks"] for r in results), "stories": totals, "stage_seconds": seconds,
               "threads_read": sum(r.get("threads", 0) for r in results),
               "comment_chunks_written": sum(r.get("comment_chunks", 0) for r in results)}
    print(f"run summary: {json.dumps(summary)}")
    emit_run_metrics(summary)
    remove_run(get_current_context()["run_id"])  # the run succeeded: its staging is no longer needed
    prune()  # failed runs' staging older than two days, from any worker
    prune_idle_hosts()
    return summary


def ingest_batches(batches) -> None:
    """The stages after discovery, shared by both DAGs: extract → embed → write (through the writer pool) → report."""
    extracted = extract_batch.expand(batch=batches.output)
    embedded = embed_batch.expand(batch=extracted)
    # The pool bounds writers across every run, backfills and manual runs included (1 slot for Milvus Lite).
    written = MilvusIngestOperator.partial(
        task_id="write_batch", map_index_template="{{ task.batch['label'] }}", pool=WRITER_POOL, outlets=[HN_CHUNKS]
    ).expand(batch=embedded)
    report_run(written.output)


@dag(
    dag_id="hn_ingest",
    # Data intervals (not bare trigger times) so that a backfill run knows which seconds it covers.
    # A shorter interval is fresher under a steady stream of stories, and makes backfills longer.
    schedule=DeltaDataIntervalTimetable(timedelta(seconds=int(os.environ.get("HN_INGEST_SCHEDULE_SECONDS", "15")))),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["hacker-news", "rag", "milvus"],
    default_args=DEFAULT_ARGS,
    params={**run_params("Re-ingest every story already in the store: a reindex that goes on, a slice per run "
                         "(HN_INGEST_REINDEX_PER_RUN stories after the run's new ones), until every story is done."),
            "cancel_reindex": Param(False, type="boolean",
                                    description="Stop a running reindex (the stories done so far stay done).")},
)
def hn_ingest():
    ingest_batches(DiscoverStoriesOperator(task_id="discover_stories"))


hn_ingest()


@dag(
    dag_id="hn_backfill",
    # One run per window of history (an hour: ~55 stories, one Algolia request), however long the backfill.
    schedule=DeltaDataIntervalTimetable(timedelta(seconds=BACKFILL_WINDOW_SECONDS)),
    start_date=pendulum.datetime(2006, 10, 9, tz="UTC"),  # Hacker News's first story
    catchup=False,
    max_active_runs=4,
    doc_md=BACKFILL_DOC,
    tags=["hacker-news", "rag", "milvus", "backfill"],
    default_args=DEFAULT_ARGS,
    params=run_params("Re-ingest every story of this run's window, done or not (never the whole store)."),
)
def hn_backfill():
    ingest_batches(DiscoverStoriesOperator(task_id="discover_stories", windowed=True))


hn_backfill()


@dag(
    dag_id="hn_reindex",
    schedule=DeltaDataIntervalTimetable(timedelta(seconds=int(os.environ.get("HN_INGEST_REINDEX_SCHEDULE_SECONDS",
                                                                              "30")))),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=int(os.environ.get("HN_INGEST_REINDEX_MAX_TASKS", "2")),
    doc_md=REINDEX_DOC,
    tags=["hacker-news", "rag", "milvus", "reindex"],
    default_args={**DEFAULT_ARGS, "priority_weight": 1},
    params={"cancel_reindex": Param(False, type="boolean",
                                    description="Stop the running reindex (the stories done so far stay done).")},
)
def hn_reindex():
    ingest_batches(DiscoverStoriesOperator(task_id="discover_stories", reindex_only=True))


hn_reindex()
