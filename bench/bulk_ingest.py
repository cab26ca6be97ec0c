"""Bench 1, 3 and 5: bulk ingest of the corpus pages, cold and warm, the idle run, and scaling.

    python -m bench.bulk_ingest            # 30 unseen stories cold; 200: cold first ingest, warm reindex, idle
    python -m bench.bulk_ingest --scaling  # also 50 and 100 stories

Each ingest gets its own Airflow home, Milvus Lite file and embedding service (a runtime directory of
its own), so its first run is cold: the model is loaded during the run, as on a fresh `make run`. The
reindex that follows finds the service warm.

The embedding-only bound is the same chunk texts (title prefix included) encoded with the same model
and batch size in one process that has the model loaded and has encoded a warm-up batch: the minimum
of 3 encodes. The ratio bound / wall says how close a run gets to the cost of the embedding alone.
Peak memory: VmHWM of every process of the run (the `airflow dags test` process, its task processes,
the embedding service), summed.
"""

from __future__ import annotations

import argparse
import json
import sys

from bench.common import (
    PeakMemory,
    cold_runtime_dir,
    corpus_ok,
    corpus_replay,
    fresh_env,
    print_table,
    run_summary,
    timed_dags_test,
)

EMBED_BOUND = """
import json, sys, time
from include.parse.chunking import embedding_input
from include.config import EmbeddingConfig
from include.embed.model import embed_texts, load_model
rows = json.load(open(sys.argv[1]))["chunk_rows"]
texts = [embedding_input(r["title"], r["text"]) for r in rows]
load_model(EmbeddingConfig().model_name)
embed_texts(texts[:64])  # warm up
runs = []
for _ in range(int(sys.argv[2])):
    t = time.monotonic(); embed_texts(texts); runs.append(time.monotonic() - t)
print(json.dumps({"seconds": min(runs), "runs": runs, "chunks": len(texts)}))
"""


def ingest(stories: int, name: str, batch_size: int, reindex: bool = True) -> dict:
    """A cold first ingest of `stories`, then (optionally) a warm reindex and an idle run."""
    result: dict = {}
    with corpus_replay(stories) as replay:
        env = fresh_env(name, replay)
        cold_runtime_dir(env)
        env.extra_env["HN_BENCH_TAG"] = name
        # The reindex run takes the whole store in its first slice, in batches like the first ingest's.
        env.extra_env.update({"HN_INGEST_REINDEX_PER_RUN": str(stories), "HN_INGEST_REINDEX_BATCH_SIZE": str(batch_size)})
        conf = {"batch_size": batch_size}
        with PeakMemory(name) as memory:
            result["first"] = (*timed_dags_test(env, conf), memory)
        if reindex:
            # Unconditional: every page is downloaded and embedded again, the path a model change takes.
            with PeakMemory(name) as memory:
                result["reindex"] = (*timed_dags_test(env, {**conf, "reindex": True, "conditional": False}), memory)
            result["conditional"] = timed_dags_test(env, {**conf, "reindex": True})  # unchanged pages: 304s
            pages_before = replay.page_requests()
            result["idle"] = timed_dags_test(env)
            result["idle_pages"] = replay.page_requests() - pages_before
        result["status"] = env.status(chunks=True)
        result["dump"] = env.data_dir / "chunks.json"
        result["dump"].write_text(json.dumps(result["status"]))
    result["env"] = env
    return result


def embedding_bound(run: dict, repeats: int = 3) -> dict:
    # ~0.04 s a chunk on 2 cores when nothing else runs; the budget allows a busy machine several times that.
    budget = 300 + 0.25 * run["status"]["chunks"] * repeats
    out = run["env"].run(sys.executable, "-c", EMBED_BOUND, str(run["dump"]), str(repeats), timeout=budget).stdout
    return json.loads(out.strip().splitlines()[-1])


def ratio_rows(label: str, run_key: str, run: dict, bound: dict, goal: str) -> list[tuple[str, str]]:
    result, wall, memory = run[run_key]
    stages = run_summary(result)["stage_seconds"]
    return [
        (f"{label}: wall (s)", f"{wall:.1f}"),
        (f"{label}: stages (s, summed over batches)", json.dumps({k: round(v, 1) for k, v in stages.items()})),
        (f"{label}: outside the stages (s)", f"{wall - sum(stages.values()):.1f}"),
        (f"{label}: ratio bound / wall", f"{bound['seconds'] / wall:.2f}  ({goal})"),
        (f"{label}: peak memory (MB, sum of processes)", f"{memory.total_mb():.0f}  ({memory.largest()})"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=200)
    parser.add_argument("--small", type=int, default=30, help="stories of the cold `make run`-like run")
    parser.add_argument("--scaling", action="store_true", help="also time 50 and 100 stories")
    args = parser.parse_args()
    corpus_ok()
    small = ingest(args.small, f"bulk-{args.small}-cold", batch_size=10, reindex=False)  # make run's batch size
    small_bound = embedding_bound(small)
    run = ingest(args.stories, "bulk", batch_size=25)
    bound = embedding_bound(run)
    status = run["status"]
    chunks = run_summary(run["reindex"][0])["chunks_written"]
    idle, idle_wall = run["idle"]
    rows = [
        (f"{args.small} unseen stories, cold (like make run)", f"{small['status']['chunks']} chunks; bound "
         f"{small_bound['seconds']:.1f} s (min of {json.dumps([round(s, 1) for s in small_bound['runs']])})"),
        *ratio_rows(f"  {args.small} cold", "first", small, small_bound, "goal >= 0.6"),
        (f"{args.stories} stories ingested / failed",
         f"{status['stories'].get('ingested', 0)} / {status['stories'].get('failed', 0)}; {chunks} chunks"),
        ("embedding-only bound (s)", f"{bound['seconds']:.1f} (min of {json.dumps([round(s, 1) for s in bound['runs']])})"),
        *ratio_rows(f"  {args.stories} cold first ingest", "first", run, bound, "cold: model load and first calls"),
        *ratio_rows(f"  {args.stories} warm reindex (conditional=false)", "reindex", run, bound, "goal >= 0.75"),
        ("stories/s, chunks/s (warm reindex)", f"{args.stories / run['reindex'][1]:.2f}, {chunks / run['reindex'][1]:.1f}"),
        ("  task time by task (s, warm reindex)", json.dumps({k: round(v, 1) for k, v in run["reindex"][0].task_seconds().items()})),
        ("reindex of unchanged pages (304s): wall (s), summary",
         f"{run['conditional'][1]:.1f}, {json.dumps(run_summary(run['conditional'][0])['stories'])}, "
         f"{run_summary(run['conditional'][0])['chunks_written']} chunks written"),
        ("idle run wall (s)", f"{idle_wall:.1f}"),
        ("idle run pages fetched / batches embedded", f"{run['idle_pages']} / {len(idle.lines('embedded'))}"),
    ]
    if args.scaling:
        for n in (50, 100):
            scaled = ingest(n, f"bulk-{n}", batch_size=25)
            rows.append((f"warm reindex wall for {n} stories (s)", f"{scaled['reindex'][1]:.1f}"))
        rows.append((f"warm reindex wall for {args.stories} stories (s)", f"{run['reindex'][1]:.1f}"))
    print_table("Bulk ingest (airflow dags test hn_ingest over the corpus replay)", rows, "bulk_ingest.txt")


if __name__ == "__main__":
    main()
