"""Bench 1, 3 and 5: bulk ingest of all 200 corpus pages, the idle run, and scaling.

    python -m bench.bulk_ingest            # 200 stories: ingest, reindex, idle run
    python -m bench.bulk_ingest --scaling  # also 50 and 100 stories

Reports stories/s, chunks/s, time per stage, orchestration overhead, peak RSS, and the ratio of the
embedding-only bound (the same chunk texts encoded in one warm process, same model and batch size)
to the end-to-end time of the reindex run.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys

from bench.common import corpus_ok, corpus_replay, fresh_env, print_table, run_summary, timed_dags_test

EMBED_BOUND = """
import json, sys, time
from include.chunking import embedding_input
from include.config import EmbeddingConfig
from include.embedding import embed_texts, load_model
rows = json.load(open(sys.argv[1]))["chunk_rows"]
texts = [embedding_input(r["title"], r["text"]) for r in rows]
load_model(EmbeddingConfig().model_name)
embed_texts(texts[:64])  # warm up
t = time.monotonic(); embed_texts(texts); print(json.dumps({"seconds": time.monotonic() - t, "chunks": len(texts)}))
"""


def ingest(stories: int, name: str) -> dict:
    with corpus_replay(stories) as replay:
        env = fresh_env(name, replay)
        first, first_wall = timed_dags_test(env, {"batch_size": 25})
        reindex, reindex_wall = timed_dags_test(env, {"reindex": True, "batch_size": 25})
        pages_before = replay.page_requests()
        idle, idle_wall = timed_dags_test(env)
        idle_pages = replay.page_requests() - pages_before
        status = env.status(chunks=True)
        dump = env.data_dir / "chunks.json"
        dump.write_text(json.dumps(status))
    return {"env": env, "first": (first, first_wall), "reindex": (reindex, reindex_wall), "idle": (idle, idle_wall),
            "status": status, "dump": dump, "idle_pages": idle_pages}


def embedding_bound(dump, env) -> dict:
    out = env.run(sys.executable, "-c", EMBED_BOUND, str(dump)).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=200)
    parser.add_argument("--scaling", action="store_true", help="also time 50 and 100 stories")
    args = parser.parse_args()
    corpus_ok()
    run = ingest(args.stories, "bulk")
    reindex, wall = run["reindex"]
    summary, tasks = run_summary(reindex), reindex.task_seconds()
    chunks = summary["chunks_written"]
    stages = summary["stage_seconds"]
    bound = embedding_bound(run["dump"], run["env"])
    idle, idle_wall = run["idle"]
    idle_tasks = idle.task_seconds()
    status = run["status"]
    rows = [
        ("stories offered", str(args.stories)),
        ("stories ingested / failed", f"{status['stories'].get('ingested', 0)} / {status['stories'].get('failed', 0)}"),
        ("chunks", str(chunks)),
        ("first ingest wall (s)", f"{run['first'][1]:.1f}"),
        ("reindex wall, end to end (s)", f"{wall:.1f}"),
        ("stories/s (reindex)", f"{args.stories / wall:.2f}"),
        ("chunks/s (reindex)", f"{chunks / wall:.1f}"),
        *[(f"  stage {k} (s, summed over batches)", f"{v:.1f}") for k, v in stages.items()],
        ("  task time by task (s)", json.dumps({k: round(v, 1) for k, v in tasks.items()})),
        ("  orchestration overhead (s)", f"{wall - sum(stages.values()):.1f}"),
        ("embedding-only bound (s)", f"{bound['seconds']:.1f} for {bound['chunks']} chunks"),
        ("ratio bound / end to end", f"{bound['seconds'] / wall:.2f}  (goal >= 0.75)"),
        ("idle run wall (s)", f"{idle_wall:.1f}"),
        ("idle run task time (s)", f"{sum(idle_tasks.values()):.2f}  {json.dumps({k: round(v, 2) for k, v in idle_tasks.items()})}"),
        ("idle run pages fetched / batches embedded", f"{run['idle_pages']} / {len(idle.lines('embedded'))}"),
        ("peak RSS of one airflow dags test (MB)", f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f}"),
    ]
    if args.scaling:
        for n in (50, 100):
            scaled = ingest(n, f"bulk-{n}")
            rows.append((f"reindex wall for {n} stories (s)", f"{scaled['reindex'][1]:.1f}"))
        rows.append((f"reindex wall for {args.stories} stories (s)", f"{wall:.1f}"))
    print_table("Bulk ingest (airflow dags test hn_ingest, reindex of the corpus replay)", rows, "bulk_ingest.txt")


if __name__ == "__main__":
    main()
