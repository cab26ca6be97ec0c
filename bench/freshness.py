"""Bench 2: freshness under the real scheduler (api-server, scheduler with LocalExecutor, dag-processor).

    python -m bench.freshness --stories 24 --every 5

The replay releases one new story every `--every` seconds; for each story, the latency is the time from
its appearance in the API to the moment its chunks and its state are committed to Milvus (the float
timestamp `write_batch` logs after the writes return).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

from bench.common import corpus_ok, fresh_env, print_table
from tests.airflow_cli import AirflowStack
from tests.replay_server import ReplayServer, load_corpus

# write_batch's line once a batch's chunks and states are written (plugins/hn_providers/operators/milvus.py).
COMMITTED = re.compile(r"committed at ([0-9.]+): stories \[([0-9, ]*)\]")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=24)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between two new stories")
    parser.add_argument("--schedule", type=int, default=15, help="the DAG's interval (HN_INGEST_SCHEDULE_SECONDS)")
    args = parser.parse_args()
    corpus_ok()
    replay = ReplayServer()
    mapped = load_corpus(replay, url_stories=args.stories, text_posts=0, dead=0, deleted=0)
    far_future = time.monotonic() + 10**9
    for story_id in mapped:
        replay.release_at[story_id] = far_future  # nothing is visible until the stack is warm
    env = fresh_env("freshness", replay)
    env.extra_env["AIRFLOW__CORE__PARALLELISM"] = "4"
    env.extra_env["HN_INGEST_SCHEDULE_SECONDS"] = str(args.schedule)
    released_wall: dict[int, float] = {}
    with replay, AirflowStack(env) as stack:
        deadline = time.monotonic() + 300
        while not any(r["state"] == "success" for r in stack.runs()):  # the stack is up and a run went through
            if time.monotonic() > deadline:
                raise SystemExit(f"no successful run in 300 s\n{stack.logs()}")
            time.sleep(3)
        start_mono, start_wall = time.monotonic() + 2, time.time() + 2
        for i, story_id in enumerate(sorted(mapped)):
            replay.release_at[story_id] = start_mono + i * args.every
            released_wall[story_id] = start_wall + i * args.every
        time.sleep(args.stories * args.every + 60)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status = env.status()
            if len(status["story_rows"]) >= len(mapped):  # every story ingested or recorded as failed
                break
            time.sleep(10)
        runs = stack.runs()
    committed = commit_times(env.home)
    latencies = [committed[s] - released_wall[s] for s in mapped if s in committed]
    costs = run_costs(env.home)
    single = [seconds for stories, seconds in costs if stories == 1]
    idle = _idle_discoveries(env.home)
    rows = [
        ("stories released / ingested", f"{len(mapped)} / {len(latencies)}  (one every {args.every:g} s)"),
        ("latency p50 (s)", f"{statistics.median(latencies):.1f}  (goal <= 10)"),
        ("latency p95 (s)", f"{percentile(latencies, 0.95):.1f}  (goal <= 20)"),
        ("latency max (s)", f"{max(latencies):.1f}"),
        ("runs / runs that ingested", f"{len(runs)} / {len(costs)}"),
        ("working run: discover start -> committed, median (s)",
         f"{statistics.median(s for _, s in costs):.1f} (median {statistics.median(n for n, _ in costs):g} stories)"
         if costs else "-"),
        ("one-story run: discover start -> committed, median (s)",
         f"{statistics.median(single):.1f} over {len(single)} runs  (goal <= 3)" if single else "no one-story run"),
        ("idle scheduled runs: CPU per discover (s)",
         f"median {statistics.median(idle):.2f}, max {max(idle):.2f} over {len(idle)} runs" if idle else "no idle run seen"),
    ]
    print_table(f"Freshness on the real scheduler (LocalExecutor, {args.schedule} s schedule)", rows,
                f"freshness-{args.schedule}s.txt")


def commit_times(airflow_home, runs: str = "scheduled__*", dags: str = "hn_ingest") -> dict[int, float]:
    """story id → when `write_batch` of a run matching `runs` of the DAGs matching `dags` had committed its
    chunks and state (its log line), earliest first."""
    found: dict[int, float] = {}
    for log in (airflow_home / "logs").glob(f"dag_id={dags}/run_id={runs}/task_id=write_batch/**/*.log"):
        for at, ids in COMMITTED.findall(log.read_text(errors="replace")):
            for story_id in filter(None, (i.strip() for i in ids.split(","))):
                found[int(story_id)] = min(found.get(int(story_id), float("inf")), float(at))
    return found


def run_costs(airflow_home) -> list[tuple[int, float]]:
    """(stories, seconds) of each run that ingested: from the start of the discover task's last
    segment (its start, or its resume after waiting on the triggerer) to the last commit."""
    costs = []
    for run in (airflow_home / "logs" / "dag_id=hn_ingest").glob("run_id=scheduled__*"):
        committed: dict[int, float] = {}
        for log in run.glob("task_id=write_batch/**/*.log"):
            for at, ids in COMMITTED.findall(log.read_text(errors="replace")):
                committed.update({int(i): float(at) for i in ids.split(",") if i.strip()})
        starts = [json.loads(line)["timestamp"] for log in run.glob("task_id=discover_stories/attempt=*.log")
                  if re.fullmatch(r"attempt=\d+\.log", log.name)
                  for line in log.read_text(errors="replace").splitlines() if "Pre Execute" in line]
        if committed and starts:
            costs.append((len(committed), max(committed.values()) - _iso(max(starts).replace("Z", "+00:00"))))
    return costs


def _idle_discoveries(airflow_home) -> list[float]:
    """CPU seconds of each scheduled discover that found nothing."""
    pattern = re.compile(r"new run: 0 stories in 0 batches; ([0-9.]+) s CPU")
    return [float(m.group(1)) for log in (airflow_home / "logs").glob(
                "dag_id=hn_ingest/run_id=scheduled__*/task_id=discover_stories/*.log")
            for m in pattern.finditer(log.read_text(errors="replace"))]


def _iso(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()


if __name__ == "__main__":
    main()
