"""One hour of Hacker News backfilled under the real scheduler: by the window (hn_backfill) and by the tick.

    python -m bench.backfill_hour               # 55 stories (HN's hourly rate) in one hour of history
    python -m bench.backfill_hour --stories 55 --skip-tick

The replay holds `--stories` corpus stories (with their real comment threads) whose creation times are
spread evenly over one hour, their pages on as many sites as their original domains. The stack is the
one `make scheduler` runs (api-server, scheduler with the LocalExecutor, dag-processor, triggerer) on a
Postgres metadata DB, and the backfill is created while it runs, as a user would. The wall is from the
`backfill create` to the last backfill run's end. The embedding-only bound is the chunks the backfill
wrote encoded in one warm process (min of 3). "By the tick" is the same hour backfilled through
hn_ingest's 15 s intervals, as before hn_backfill (240 runs); `--skip-tick` leaves it out.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

from bench.bulk_ingest import embedding_bound
from bench.common import corpus_ok, fresh_env, print_table
from tests import corpus
from tests.airflow_cli import AirflowStack
from tests.replay_server import ReplayServer, load_corpus
from tests.services import Postgres, ensure_debian_packages

HOUR_START = 1609282800  # 2020-12-29 23:00 UTC


def hour_replay(stories: int) -> ReplayServer:
    pages = corpus.pages()[:stories]
    groups = corpus.site_groups(pages)
    replay = ReplayServer(page_hosts=max(groups) + 1)
    replay.mapped = load_corpus(replay, url_stories=stories, text_posts=0, dead=0, deleted=0, sites=groups,
                                comments=True)
    for number, story_id in enumerate(sorted(replay.mapped)):
        replay.items[story_id]["time"] = HOUR_START + number * 3600 // stories
    replay.newstories_limit = 0  # the live DAG finds nothing: only the backfill fetches
    return replay  # started by `with`


def backfill(name: str, dag_id: str, stories: int) -> dict:
    ensure_debian_packages("postgresql")
    with hour_replay(stories) as replay:
        env = fresh_env(name, replay)
        with Postgres(env.home.parent / "pg") as pg:
            env.extra_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = pg.sqlalchemy_url
            env.migrate()
            with AirflowStack(env) as stack:
                stack.wait_for_api()
                fmt = lambda t: datetime.fromtimestamp(t, UTC).isoformat()  # noqa: E731
                last = HOUR_START if dag_id == "hn_backfill" else HOUR_START + 3600 - 15
                create = ("backfill", "create", "--dag-id", dag_id, "--from-date", fmt(HOUR_START),
                          "--to-date", fmt(last), "--max-active-runs", "4")
                # Refused until the dag-processor has stored the DAG.
                stack.wait_for(lambda: env.airflow(*create, check=False).returncode == 0, 300, "the backfill")
                started = time.monotonic()

                def finished() -> list:
                    runs = env.query("SELECT state FROM dag_run WHERE dag_id = :dag AND run_type = 'backfill'",
                                     dag=dag_id)
                    return runs if runs and all(s in ("success", "failed") for (s,) in runs) else []

                runs = stack.wait_for(finished, 3600, f"the backfill of {dag_id}", poll=0.5)
                wall = time.monotonic() - started
                algolia = len(replay.algolia_searches)
            status = env.status(chunks=True)
        dump = env.data_dir / "chunks.json"
        dump.write_text(json.dumps(status))
    return {"wall": wall, "runs": [s for (s,) in runs], "stories": status["stories"], "chunks": status["chunks"],
            "comment_chunks": status["comment_chunks"], "algolia": algolia,
            "bound": {"env": env, "dump": dump, "status": status}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=55)
    parser.add_argument("--skip-tick", action="store_true")
    args = parser.parse_args()
    corpus_ok()
    rows = []
    scenarios = [("by the window (hn_backfill, 1 h runs)", "hn_backfill")]
    if not args.skip_tick:
        scenarios.append(("by the tick (hn_ingest, 15 s runs)", "hn_ingest"))
    for label, dag_id in scenarios:
        result = backfill(f"backfill-hour-{dag_id}", dag_id, args.stories)
        ingested = result["stories"].get("ingested", 0)
        rows += [
            (f"{label}: wall (s)", f"{result['wall']:.1f}"),
            (f"{label}: runs created (states)", f"{len(result['runs'])} ({dict((s, result['runs'].count(s)) for s in set(result['runs']))})"),
            (f"{label}: stories (states), stories/s", f"{result['stories']}, {ingested / result['wall']:.2f}"),
            (f"{label}: chunks (comment chunks), Algolia searches", f"{result['chunks']} ({result['comment_chunks']}), {result['algolia']}"),
        ]
        if dag_id == "hn_backfill":
            bound = embedding_bound(result["bound"])
            rows.append((f"{label}: embedding-only bound (s), bound / wall",
                         f"{bound['seconds']:.1f}, {bound['seconds'] / result['wall']:.2f}  (goal: wall <= 60 s)"))
    print_table(f"Backfill of one hour of HN ({args.stories} stories) under the scheduler", rows, "backfill_hour.txt")


if __name__ == "__main__":
    main()
