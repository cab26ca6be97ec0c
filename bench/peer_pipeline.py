#!/usr/bin/env python
# ruff: noqa: E402, I001  (environment settings must precede the imports they affect)
"""Benchmark peer: unstructured-ingest v1 Python pipeline, fully offline.

Run by `bench/peer.py` in its own virtual environment (`bench/.peer-venv`), never imported by the
project. Written for unstructured-ingest 1.11.23.

local dir of .html -> partition (local, strategy=fast) -> chunk (by_title,
max_characters=1000, new_after_n_chars=800) -> embed (huggingface /
sentence-transformers, local model dir) -> Milvus Lite (.db file), num_processes=2.

Usage:
    python peer_ingest.py --input-dir DIR --work-dir DIR --db PATH.db --model MODEL_DIR

Prints wall seconds, the number of chunks in the Milvus collection (count(*) query)
and the time spent in each pipeline step (parent-side wall time of the step's
__call__, i.e. including multiprocessing pool start-up), embed included.
"""
from __future__ import annotations

import time

T_PROCESS_START = time.perf_counter()

import os

# --- offline / quiet settings: must be set before unstructured / huggingface_hub import ---
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["UNSTRUCTURED_DISABLE_NOTICE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import multiprocessing as mp
import shutil
import sys
from collections import defaultdict
from pathlib import Path


# --- spaCy workaround -------------------------------------------------------------
# unstructured's HTML parser calls is_possible_narrative_text(), which needs a spaCy
# model that unstructured tries to download at run time (fails offline). The parser
# looks the name up in its own module globals at call time, so replacing the module
# attribute is enough. This runs at import time of this file, so:
#   * fork (Linux default on 3.11): workers inherit the patched module;
#   * spawn / forkserver: workers re-import this file as __mp_main__ and patch again.
_DEBUG_PATCH = bool(os.environ.get("PEER_DEBUG_PATCH"))


def _simple_narrative(text, *args, **kwargs):
    if _DEBUG_PATCH:
        pid = os.getpid()
        if pid not in _seen_pids:
            _seen_pids.add(pid)
            print(f"[peer] patched is_possible_narrative_text used in pid {pid}",
                  file=sys.stderr, flush=True)
    return len(text.split()) >= 3


_seen_pids: set[int] = set()


def _apply_narrative_patch() -> None:
    import unstructured.partition.html.parser as html_parser
    import unstructured.partition.text_type as text_type

    html_parser.is_possible_narrative_text = _simple_narrative
    text_type.is_possible_narrative_text = _simple_narrative


_apply_narrative_patch()

from unstructured_ingest.interfaces import ProcessorConfig  # noqa: E402
from unstructured_ingest.pipeline.pipeline import Pipeline  # noqa: E402
from unstructured_ingest.processes.chunker import ChunkerConfig  # noqa: E402
from unstructured_ingest.processes.connectors.local import (  # noqa: E402
    LocalConnectionConfig,
    LocalDownloaderConfig,
    LocalIndexerConfig,
)
from unstructured_ingest.processes.connectors.milvus import (  # noqa: E402
    MilvusConnectionConfig,
    MilvusUploaderConfig,
    MilvusUploadStagerConfig,
)
from unstructured_ingest.processes.embedder import EmbedderConfig  # noqa: E402
from unstructured_ingest.processes.partitioner import PartitionerConfig  # noqa: E402

EMBED_DIM = 384

FORKSERVER_PRELOAD = [
    "unstructured_ingest.pipeline.pipeline",
    "unstructured_ingest.embed.huggingface",
    "unstructured_ingest.processes.connectors.milvus",
    "unstructured.partition.auto",
    "unstructured.partition.html",
    "unstructured.partition.html.parser",
    "unstructured.staging.base",
    "unstructured.chunking.dispatch",
    "unstructured.chunking.title",
    "torch",
    "sentence_transformers",
    "sentence_transformers.models",  # lazily imported on first model load
    "transformers.models.bert.modeling_bert",
    "transformers.models.bert.tokenization_bert",
    "pymilvus",
]

STEP_TIMES: dict[str, float] = defaultdict(float)


def _noop(x):
    return x


def _instrument_steps(pipeline: Pipeline) -> None:
    """Wrap each step class's __call__ (runs in the parent) to record wall time."""
    done = set()
    for step in pipeline._get_ordered_steps():
        cls = type(step)
        if cls in done:
            continue
        done.add(cls)
        orig = cls.__call__

        def timed(self, *a, __orig=orig, **kw):
            t0 = time.perf_counter()
            try:
                return __orig(self, *a, **kw)
            finally:
                STEP_TIMES[self.identifier] += time.perf_counter() - t0

        cls.__call__ = timed

    # Pipeline._run_initialization: init()+precheck() of every step in the parent; for the
    # huggingface embedder this loads the model and embeds "Q" to learn the dimension.
    orig_init = pipeline._run_initialization

    def timed_init():
        t0 = time.perf_counter()
        try:
            return orig_init()
        finally:
            STEP_TIMES["init"] += time.perf_counter() - t0

    pipeline._run_initialization = timed_init


def create_collection(db_path: str, collection: str) -> None:
    """Schema as in unstructured-ingest's own Milvus integration test
    (test/integration/connectors/test_milvus.py): auto-id INT64 primary key, record_id
    VARCHAR (the uploader deletes by it before inserting), 'embeddings' FLOAT_VECTOR, and
    dynamic fields on, so text and the flattened metadata land in the dynamic field."""
    from pymilvus import CollectionSchema, DataType, FieldSchema, MilvusClient

    client = MilvusClient(uri=db_path)
    try:
        if client.has_collection(collection):
            client.drop_collection(collection)
        schema = CollectionSchema(
            enable_dynamic_field=True,
            fields=[
                FieldSchema(name="id", dtype=DataType.INT64, is_primary=True, auto_id=True),
                # record_id = the local file's full path (upstream's test uses 64, too short
                # for real paths)
                FieldSchema(name="record_id", dtype=DataType.VARCHAR, max_length=1024),
                FieldSchema(name="embeddings", dtype=DataType.FLOAT_VECTOR, dim=EMBED_DIM),
            ],
        )
        index_params = client.prepare_index_params()
        index_params.add_index(field_name="embeddings", index_type="AUTOINDEX", metric_type="COSINE")
        client.create_collection(collection_name=collection, schema=schema, index_params=index_params)
    finally:
        client.close()


def dump_texts(db_path: str, collection: str, out: str) -> None:
    """Every chunk's file name and text, for the quality comparison."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=db_path)
    try:
        client.load_collection(collection)
        rows, offset = [], 0
        while True:
            page = client.query(collection_name=collection, filter="id >= 0", output_fields=["filename", "text"],
                                limit=10_000, offset=offset)
            rows.extend({"filename": r["filename"], "text": r["text"]} for r in page)
            if len(page) < 10_000:
                break
            offset += len(page)
    finally:
        client.close()
    import json

    Path(out).write_text(json.dumps(rows))


def count_rows(db_path: str, collection: str) -> int:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=db_path)
    try:
        try:
            client.flush(collection)
        except Exception:
            pass
        res = client.query(collection_name=collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])
    finally:
        client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input-dir", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--db", required=True, help="Milvus Lite database path, must end in .db")
    ap.add_argument("--model", required=True, help="local sentence-transformers model directory")
    ap.add_argument("--collection", default="peer_chunks")
    ap.add_argument("--dump", help="write every chunk's filename and text to this JSON file")
    ap.add_argument("--num-processes", type=int, default=2)
    ap.add_argument("--keep-work-dir", action="store_true",
                    help="don't wipe --work-dir before the run (cached step outputs are still "
                         "ignored: reprocess=True)")
    args = ap.parse_args()

    db_path = str(Path(args.db).resolve())
    if not db_path.endswith(".db"):
        ap.error("--db must end in .db (that is how pymilvus recognises Milvus Lite)")
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(args.work_dir).resolve()
    if work_dir.exists() and not args.keep_work_dir:
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    model_path = str(Path(args.model).resolve())
    n_files = sum(1 for p in Path(args.input_dir).iterdir() if p.is_file())

    # Worker start method. The pipeline creates a multiprocessing.Pool per step with the
    # default context. With "fork" (Linux default on 3.11) the embed step deadlocks: the
    # parent already ran the model once (Pipeline._run_initialization embeds "Q" to learn
    # the dimension), so torch's OpenMP/MKL thread pool exists in the parent, and GNU
    # libgomp is not fork-safe -> the forked workers hang in their first encode().
    # "forkserver" (the default from Python 3.14 on) forks workers from a clean server
    # process that has only imported this file (which applies the spaCy patch).
    # CPython 3.11 (checked on 3.11.7) never actually preloads "__main__" in the fork server (it looks for a
    # 'main_path' key that get_preparation_data() doesn't produce), so every worker would
    # re-run this file and re-import unstructured/torch (~3-6 s per pool, one pool per step).
    # Preload the heavy modules by name instead; re-running this file in a worker is then
    # cheap (and re-applies the spaCy patch). The fork server is started before the clock
    # starts, as its imports are start-up cost that "fork" would not have.
    mp.set_start_method("forkserver", force=True)
    mp.set_forkserver_preload(["__main__", *FORKSERVER_PRELOAD])
    # ensure_running() returns before the server has finished its imports: run one no-op
    # task through it so that start-up is over (and off the CPU) before the clock starts.
    with mp.Pool(1) as warm_pool:
        warm_pool.map(_noop, [0])

    t_start = time.perf_counter()

    # Milvus Lite (milvus-lite 3.x) serves the .db directory from a gRPC server thread in
    # the process that first opens it, and holds an exclusive flock on it. Open it here,
    # in the parent, and give the pipeline the loopback URI of that server, so the two
    # upload workers are clients of the parent's server instead of each trying (and
    # failing, DataDirLockedError) to open the .db themselves.
    from milvus_lite.server_manager import server_manager_instance

    milvus_uri = server_manager_instance.start_and_get_uri(db_path)
    if not milvus_uri:
        raise SystemExit(f"could not open Milvus Lite database {db_path}")

    # The uploader's precheck requires an existing collection.
    t0 = time.perf_counter()
    create_collection(db_path, args.collection)
    STEP_TIMES["create_collection"] = time.perf_counter() - t0

    pipeline = Pipeline.from_configs(
        context=ProcessorConfig(
            work_dir=str(work_dir),
            num_processes=args.num_processes,
            reprocess=True,
            verbose=False,
            tqdm=False,
        ),
        indexer_config=LocalIndexerConfig(input_path=args.input_dir, recursive=False),
        downloader_config=LocalDownloaderConfig(),
        source_connection_config=LocalConnectionConfig(),
        # content_type: all inputs are .html, but libmagic calls some of them (e.g. ones
        # starting with "<!--?xml ...") application/javascript, unstructured then routes them
        # to partition_text (wrong partitioner, and its title check needs spaCy -> download
        # attempt -> fails offline). Assert the type, as the benchmark's input is HTML.
        partitioner_config=PartitionerConfig(
            strategy="fast",
            partition_by_api=False,
            additional_partition_args={"content_type": "text/html"},
        ),
        chunker_config=ChunkerConfig(
            chunking_strategy="by_title",
            chunk_max_characters=1000,
            chunk_new_after_n_chars=800,
        ),
        embedder_config=EmbedderConfig(
            embedding_provider="huggingface",
            embedding_model_name=model_path,
        ),
        destination_connection_config=MilvusConnectionConfig(uri=milvus_uri),
        stager_config=MilvusUploadStagerConfig(),
        uploader_config=MilvusUploaderConfig(collection_name=args.collection),
    )
    _instrument_steps(pipeline)
    pipeline.run()

    wall = time.perf_counter() - t_start
    n_chunks = count_rows(db_path, args.collection)
    if args.dump:
        dump_texts(db_path, args.collection, args.dump)

    print("=" * 60)
    print(f"peer: unstructured-ingest pipeline, {n_files} input files, "
          f"num_processes={args.num_processes}")
    for ident in ("create_collection", "init", "download", "partition", "chunk", "embed",
                  "upload_stage", "upload"):
        if ident in STEP_TIMES:
            print(f"step {ident:<17s} {STEP_TIMES[ident]:8.2f} s")
    print(f"embed_seconds={STEP_TIMES.get('embed', float('nan')):.2f}")
    print(f"chunks_in_milvus={n_chunks}")
    print(f"wall_seconds={wall:.2f}")
    print(f"process_seconds={time.perf_counter() - T_PROCESS_START:.2f}  "
          f"(wall + imports + fork-server start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
