"""Politeness at backfill scale: what each site saw with the per-host limits off and on, and their cost.

    python -m bench.politeness                # 200-story backfill on 4 sites, then the bulk cost
    python -m bench.politeness --stories 100 --sites 2

1. A real backfill under the scheduler (LocalExecutor, 4 backfill runs at once, 4 task slots): the
   200 corpus stories are placed in one minute of HN time (4 data intervals) and their pages on 4
   sites. The replay records every request per site: peak concurrency, most requests in any 1 s,
   shortest gap. "limits off" is this code with robots.txt, K and R switched off, which fetches as the
   release before them did (8 pages at once per batch, no shared limit); "defaults" is K=2, R=1/s.
2. The cost on the bulk bench: `airflow dags test` of the same 200 stories cold, pages on as many
   sites as their original domains (195), limits off and on.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from bench.common import corpus_ok, corpus_replay, fresh_env, print_table, timed_dags_test
from tests.airflow_cli import AirflowStack
from tests.replay_server import INTERVAL

LIMITS_OFF = {"HN_INGEST_OBEY_ROBOTS": "false", "HN_INGEST_HOST_CONCURRENCY": "0", "HN_INGEST_HOST_RATE": "0"}
SCENARIOS = {"limits off": LIMITS_OFF, "defaults (K=2, R=1/s)": {}}
WINDOW_START = 1609282800  # a whole number of intervals


def backfill(name: str, overrides: dict, stories: int, sites: int) -> dict:
    """Backfill `stories` stories created within 4 intervals; returns per-site figures and the wall."""
    with corpus_replay(stories, sites=sites) as replay:
        for number, story_id in enumerate(sorted(replay.mapped)):
            replay.items[story_id]["time"] = WINDOW_START + number % (4 * INTERVAL)
        replay.newstories_limit = 0  # scheduled runs find nothing: only the backfill fetches
        env = fresh_env(name, replay)
        env.extra_env.update(overrides)
        stack = AirflowStack(env)
        try:
            # The backfill is created before the scheduler starts: `backfill create` racing a running
            # scheduler on SQLite once crashed the scheduler (StaleDataError on dag_run).
            stack.start("dag-processor")
            fmt = lambda t: datetime.fromtimestamp(t, UTC).isoformat()  # noqa: E731
            create = ("backfill", "create", "--dag-id", "hn_ingest", "--from-date", fmt(WINDOW_START),
                      "--to-date", fmt(WINDOW_START + 3 * INTERVAL), "--max-active-runs", "4")
            # Refused until the dag-processor has stored the DAG.
            stack.wait_for(lambda: env.airflow(*create, check=False).returncode == 0, 300, "the backfill to be created")
            started = time.monotonic()
            for name in ("api-server", "scheduler", "triggerer"):
                stack.start(name)
            done = stack.wait_for(lambda: len(finished := [r for r in stack.runs() if r["run_type"] == "backfill"
                                                           and r["state"] in ("success", "failed")]) >= 4 and finished,
                                  3600, "4 backfill runs", poll=1)
            wall = time.monotonic() - started
        finally:
            stack.__exit__(None, None, None)
        status = env.status()
    per_site = [(replay.peak_concurrency(s), replay.peak_rate(s), replay.min_gap(s), len(replay.crawl_visits(s)))
                for s in range(sites)]
    return {"wall": wall, "runs": [r["state"] for r in done], "sites": per_site, "stories": status["stories"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=200)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--skip-bulk", action="store_true")
    args = parser.parse_args()
    corpus_ok()
    rows = []
    for label, overrides in SCENARIOS.items():
        result = backfill(f"politeness-{label.split()[0]}", overrides, args.stories, args.sites)
        rows += [
            (f"backfill, {label}: wall (s), runs", f"{result['wall']:.1f}, {result['runs']}; stories {result['stories']}"),
            ("  per site: peak concurrency", str([s[0] for s in result["sites"]])),
            ("  per site: most requests in 1 s", str([s[1] for s in result["sites"]])),
            ("  per site: shortest gap (s)", str([round(s[2], 3) for s in result["sites"]])),
            ("  per site: requests (pages and robots.txt)", str([s[3] for s in result["sites"]])),
        ]
    if not args.skip_bulk:
        for label, overrides in SCENARIOS.items():
            with corpus_replay(args.stories) as replay:
                env = fresh_env(f"politeness-bulk-{label.split()[0]}", replay)
                env.extra_env.update(overrides)
                _, wall = timed_dags_test(env, {"batch_size": 25})
                sites = len(replay.servers)
                rows.append((f"bulk {args.stories} cold, {sites} sites, {label}: wall (s)", f"{wall:.1f}"))
    print_table(f"Politeness: {args.stories}-story backfill on {args.sites} sites, and the bulk cost", rows,
                "politeness.txt")


if __name__ == "__main__":
    main()
