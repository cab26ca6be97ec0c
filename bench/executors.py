"""Bench: the same replay through the LocalExecutor and through the CeleryExecutor with two workers.

    tests/run_offline.sh .venv/bin/python -m bench.executors --stories 40

Both stacks run the real scheduler against the same Milvus 2.3.5 server (collections dropped between
them) and a staging base outside every data directory. With a one-hour schedule the DAG's first
scheduled run takes every story of the replay (cold: new task processes, the embedding service
starting); a manual `reindex=true` run follows (warm). Celery's two workers each have their own data
directory (the other's hidden), embedding service and namespace (tests/celery_stack.py), as hosts would;
here they share the machine's 2 cores, so the figure is the cost of the distributed path, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import datetime
from pathlib import Path

from bench.common import RESULTS, corpus_ok, print_table
from tests.airflow_cli import AirflowEnv, AirflowStack
from tests.celery_stack import CeleryStack
from tests.milvus_server import MilvusServer, drop_all_collections
from tests.replay_server import ReplayServer, load_corpus
from tests.services import Postgres, Redis, ensure_debian_packages


def wall_seconds(run: dict) -> float:
    return (datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"])).total_seconds()


def measure(stack, env: AirflowEnv, stories: int) -> dict[str, float]:
    """Cold: the first scheduled run (every story); warm: a manual reindex right after."""
    def finished(kind: str):
        runs = [r for r in stack.runs() if r["run_type"] == kind and r["state"] in ("success", "failed")]
        return runs and runs[0]

    cold = stack.wait_for(lambda: finished("scheduled"), 1800, "the first scheduled run", poll=2)
    env.airflow("dags", "trigger", "hn_ingest", "-c", '{"reindex": true}')
    warm = stack.wait_for(lambda: finished("manual"), 1800, "the reindex run", poll=2)
    status = env.status()
    assert cold["state"] == warm["state"] == "success", (cold, warm)
    assert status["stories"].get("ingested") == stories, status["stories"]
    return {"cold": wall_seconds(cold), "warm": wall_seconds(warm), "chunks": status["chunks"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=40)
    args = parser.parse_args()
    corpus_ok()
    ensure_debian_packages("postgresql", "redis-server")
    root = RESULTS / "executors"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    replay = ReplayServer()
    load_corpus(replay, url_stories=args.stories, text_posts=0, dead=0, deleted=0)
    results: dict[str, dict] = {}
    with replay, MilvusServer(root / "milvus") as milvus:
        def env_for(name: str) -> AirflowEnv:
            return AirflowEnv(root / name / "airflow", root / name / "scheduler-data", {
                **replay.connection_env(),
                "AIRFLOW_CONN_MILVUS_DEFAULT": json.dumps({"conn_type": "milvus", "host": milvus.uri}),
                "HN_INGEST_STAGING_URL": (root / name / "staging").as_uri(),
                "HN_INGEST_SCHEDULE_SECONDS": "3600",
                "HN_INGEST_EMBEDDING_SERVICE_IDLE": "60",
            })

        env = env_for("local")
        env.migrate()
        with AirflowStack(env) as stack:
            results["LocalExecutor"] = measure(stack, env, args.stories)
        drop_all_collections(milvus.uri)
        time.sleep(5)
        with Postgres(root / "pg") as postgres, Redis(root / "redis") as redis:
            env = env_for("celery")
            workers = {"worker-1": root / "celery" / "w1", "worker-2": root / "celery" / "w2"}
            stack = CeleryStack(env, postgres, redis, workers)
            env.migrate()
            with stack:
                results["CeleryExecutor, 2 workers"] = measure(stack, env, args.stories)
    local = results["LocalExecutor"]
    rows = [(f"{name}: cold / warm run wall", f"{r['cold']:.1f} s / {r['warm']:.1f} s ({r['chunks']} chunks)")
            for name, r in results.items()]
    celery = results["CeleryExecutor, 2 workers"]
    rows.append(("Celery / Local, cold / warm", f"{celery['cold'] / local['cold']:.2f} / {celery['warm'] / local['warm']:.2f}"))
    print_table(f"{args.stories} stories on the real scheduler, Milvus 2.3.5 server, one run each", rows,
                save_as="executors.txt")
    Path(root / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
