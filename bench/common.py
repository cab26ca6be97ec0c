"""Shared set-up of the benchmarks: a replay of the whole corpus, an Airflow home, a results table."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time

from include.config import PROJECT_ROOT
from tests import corpus
from tests.airflow_cli import AirflowEnv, DagRunResult
from tests.replay_server import ReplayServer, load_corpus

RESULTS = PROJECT_ROOT / "bench" / "results"

# Each bench database gets its own embedding service: let them go soon after the bench.
os.environ.setdefault("HN_INGEST_EMBEDDING_SERVICE_IDLE", "60")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python {platform.python_version()}"


def corpus_replay(stories: int = 200) -> ReplayServer:
    """A started replay whose first `stories` URL stories point at the corpus pages, one each."""
    replay = ReplayServer()
    replay.mapped = load_corpus(replay, url_stories=stories, text_posts=0, dead=0, deleted=0)
    return replay.start()


def fresh_env(name: str, replay: ReplayServer) -> AirflowEnv:
    root = RESULTS / name
    subprocess.run(["rm", "-rf", str(root)], check=True)
    env = AirflowEnv(root / "airflow", root / "data", replay.connection_env())
    env.migrate()
    return env


def timed_dags_test(env: AirflowEnv, conf: dict | None = None) -> tuple[DagRunResult, float]:
    started = time.monotonic()
    result = env.dags_test(conf, timeout=3600)
    wall = time.monotonic() - started
    if not result.succeeded:
        raise SystemExit(f"hn_ingest failed:\n{result.log[-5000:]}")
    return result, wall


def run_summary(result: DagRunResult) -> dict:
    line = result.lines("run summary: ")[-1]
    return json.loads(line.split("run summary: ", 1)[1].strip())


def print_table(title: str, rows: list[tuple[str, str]], save_as: str | None = None) -> None:
    width = max(len(k) for k, _ in rows)
    text = "\n".join([f"## {title}", f"machine: {machine()}", *(f"{k:<{width}}  {v}" for k, v in rows)])
    print(text, flush=True)
    if save_as:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / save_as).write_text(text + "\n")


def corpus_ok() -> None:
    if not corpus.corpus_available():
        raise SystemExit(f"the corpus is missing at {corpus.corpus_dir()}")
