"""Bench 12: a reindex of a store no run may map whole, under the real scheduler, killed midway.

    tests/run_offline.sh .venv/bin/python -m bench.reindex_scale [--stories 12500] [--per-run 500]

The store is a Milvus server (the 2.3.5 wheel of tests/milvus_server.py: it keeps a key written twice,
so a duplicate shows) holding `--stories` stories that the replay serves as small pages of real words (one
chunk each); they are written through the project's writer with random unit vectors, so seeding needs no
model. The scheduler stack (api-server, scheduler with LocalExecutor, dag-processor, triggerer) runs
`hn_ingest` on its 15 s schedule; a manual run with `reindex=true, conditional=false` begins the job and
takes its first slice, and the runs of `hn_reindex` take the next ones (`--per-run` stories in batches
of `--batch`). Meanwhile the replay releases
a new story every `--every` seconds: its latency from release to committed (the writer's log line, as
`bench.freshness`), first for `--baseline` seconds with no reindex (the reference, same run), then during
the reindex. Once `--kill-at` of the job is done, the scheduler is killed (SIGKILL, its process
group: the running tasks die with it) and started again.

At the end the job must be finished, every story's state written since it began, the chunk rows as many
as before plus the new stories', and no key twice.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import zlib

from bench.common import RESULTS, corpus_ok, fresh_env, machine, print_table
from bench.freshness import commit_times, percentile
from tests.airflow_cli import AirflowStack
from tests.milvus_server import MilvusServer
from tests.replay_server import ReplayServer

BASE_ID = 30_000_000  # above the corpus's HN ids: never a story the corpus knows
SITES = 8
KILL_SHADOW = 120  # s around a scheduler kill: Airflow needs ~60-90 s to find and rerun the dead one's tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=12_500)
    parser.add_argument("--per-run", type=int, default=500, help="HN_INGEST_REINDEX_PER_RUN")
    parser.add_argument("--batch", type=int, default=100, help="HN_INGEST_REINDEX_BATCH_SIZE")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between two new stories")
    parser.add_argument("--kill-at", type=float, default=0.4, help="share of the job done when the scheduler is killed")
    parser.add_argument("--timeout", type=float, default=5400.0)
    parser.add_argument("--baseline", type=float, default=120.0, help="seconds of new stories before the reindex")
    args = parser.parse_args()
    corpus_ok()
    root = RESULTS / "reindex-scale"
    subprocess.run(["rm", "-rf", str(root / "milvus")], check=True)
    words = corpus_words()
    replay = ReplayServer(page_hosts=SITES)
    replay.newstories_limit = 500
    old = [add_story(replay, words, BASE_ID + i, time.time() - 30 * 86_400 + i * 60) for i in range(args.stories)]
    new_ids = [BASE_ID + args.stories + i for i in range(int((args.timeout + args.baseline) / args.every))]
    far = time.monotonic() + 10**9
    for story_id in new_ids:
        add_story(replay, words, story_id, time.time())
        replay.release_at[story_id] = far  # released one by one once the reindex runs
    print(f"reindex scale bench: {args.stories:,} stories, {args.per_run} per run in batches of {args.batch}; "
          f"{machine()}", flush=True)
    with MilvusServer(root / "milvus", startup_timeout=300) as server, replay:
        seeded = seed_store(server.uri, replay, old, words)
        env = fresh_env("reindex-scale/airflow-run", replay)
        env.extra_env.update({
            "AIRFLOW_CONN_MILVUS_DEFAULT": json.dumps({"conn_type": "milvus", "host": server.uri}),
            "AIRFLOW__CORE__PARALLELISM": "4", "HN_INGEST_COMMENTS": "false", "HN_INGEST_HOST_RATE": "50",
            "HN_INGEST_REINDEX_PER_RUN": str(args.per_run), "HN_INGEST_REINDEX_BATCH_SIZE": str(args.batch)})
        with AirflowStack(env) as stack:
            stack.wait_for(lambda: any(r["state"] == "success" for r in stack.runs()), 300, "a first run")
            before = store_counts(server.uri)
            released: dict[int, float] = {}  # story id -> wall time of its release
            phase: dict[int, str] = {}  # story id -> baseline (no reindex), reindex, or kill (near the kill)
            clock = time.monotonic()

            def release_due(label: str) -> None:
                due = len(released)
                if due < len(new_ids) and time.monotonic() - clock >= due * args.every:
                    replay.release_at[new_ids[due]] = time.monotonic()
                    released[new_ids[due]], phase[new_ids[due]] = time.time(), label

            while time.monotonic() - clock < args.baseline:  # the same stream with no reindex: the reference
                release_due("baseline")
                time.sleep(0.5)
            started = time.monotonic()
            env.airflow("dags", "trigger", "hn_ingest", "--conf", json.dumps({"reindex": True, "conditional": False}))
            kill = None
            progress: dict = {}
            while time.monotonic() - started < args.timeout:
                near_kill = kill is not None and time.monotonic() - started - kill["at_seconds"] < KILL_SHADOW
                release_due("kill" if near_kill else "reindex")
                progress = reindex_progress(env) or progress
                if progress.get("state") == "finished":
                    break
                if kill is None and progress.get("total") and progress["done"] >= args.kill_at * progress["total"]:
                    stack.kill("scheduler")
                    kill = {"at_seconds": time.monotonic() - started, "done": progress["done"]}
                    for story_id in [s for s, at in released.items() if time.time() - at < KILL_SHADOW]:
                        phase[story_id] = "kill"  # released shortly before: in flight when the scheduler died
                    print(f"  scheduler killed at {kill['at_seconds']:.0f} s, {progress['done']:,} done", flush=True)
                    time.sleep(5)
                    stack.start("scheduler")
                time.sleep(1)
            wall = time.monotonic() - started
            # A story may also come in through hn_backfill's hourly sweep (it is unpaused too).
            try:
                stack.wait_for(lambda: all(s in commit_times(env.home, runs="*", dags="hn_*") for s in released), 180,
                               "the released stories")
            except AssertionError as exc:
                print(f"  {exc}", flush=True)
            runs = env.query("SELECT count(DISTINCT run_id) FROM task_instance WHERE dag_id = 'hn_reindex' "
                             "AND task_id = 'write_batch' AND state = 'success'")[0][0]
        after = store_counts(server.uri, job_started=True)
    committed = commit_times(env.home, runs="*", dags="hn_*")
    latencies = [committed[s] - released[s] for s in released if s in committed]

    def freshness(label: str) -> str:
        values = [committed[s] - released[s] for s in released if s in committed and phase[s] == label]
        if not values:
            return "-"
        return f"{statistics.median(values):.1f} / {percentile(values, 0.95):.1f} / {max(values):.1f} ({len(values)} stories)"

    finished = progress.get("state") == "finished"
    rows = [
        ("stories in the store / reindexed", f"{seeded:,} / {progress.get('done', 0):,} of {progress.get('total', 0):,}"
                                              f" ({'finished' if finished else 'NOT finished'})"),
        ("per run / reindex batch size", f"{args.per_run} / {args.batch} (max_map_length 1,024)"),
        ("wall, trigger -> job finished (s)", f"{wall:.0f} ({progress.get('done', 0) / wall:.1f} stories/s)"),
        ("hn_reindex runs that took a slice (after hn_ingest's run that began it)", str(runs)),
        ("scheduler killed (SIGKILL) at", f"{kill['at_seconds']:.0f} s, {kill['done']:,} done" if kill else "not reached"),
        ("new stories released / committed", f"{len(released)} / {len(latencies)} (one every {args.every:g} s; "
                                             "committed by hn_ingest or hn_backfill's hourly sweep)"),
        ("freshness p50 / p95 / max (s): before the reindex (same stream)", freshness("baseline")),
        ("  during the reindex (goal p95 <= 20)", freshness("reindex")),
        (f"  released within {KILL_SHADOW} s of the scheduler kill", freshness("kill")),
        ("chunk rows before / after / new stories'", f"{before['chunks']:,} / {after['chunks']:,} / "
                                                     f"{after['chunks'] - before['chunks']:,}"),
        ("distinct chunk keys after (duplicates)", f"{after['keys']:,} ({after['chunks'] - after['keys']:,})"),
        ("stories not rewritten since the job began / given up", f"{after['not_rewritten']:,} / "
                                                                  f"{progress.get('given_up', 0):,}"),
    ]
    print_table(f"Reindex at scale on the scheduler, Milvus 2.3.5 server ({machine()})", rows, "reindex_scale.txt")
    if not finished or after["chunks"] != after["keys"] or after["not_rewritten"]:
        sys.exit(1)


def corpus_words() -> list[str]:
    from tests import corpus

    return [w for page in corpus.pages() if page.truth_text for w in page.truth_text.split()][:200_000]


def page_text(words: list[str], story_id: int) -> str:
    start = zlib.crc32(str(story_id).encode()) % (len(words) - 80)
    return " ".join(words[start : start + 60])


def add_story(replay: ReplayServer, words: list[str], story_id: int, posted: float) -> int:
    """A story whose page is one paragraph of real words on one of the replay's sites."""
    title = " ".join(page_text(words, story_id + 7).split()[:6])
    body = f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1><p>" \
           f"{page_text(words, story_id)}</p></article></body></html>".encode()
    url = replay.add_page(f"/s/{story_id}", body, site=story_id % SITES)
    replay.add_item({"id": story_id, "type": "story", "by": "bench", "time": int(posted), "title": title,
                     "url": url, "score": 10, "descendants": 0}, story_id)
    return story_id


def seed_store(uri: str, replay: ReplayServer, story_ids: list[int], words: list[str]) -> int:
    """The stories as a first ingest wrote them: one chunk each, random unit vectors, through the writer."""
    import numpy as np

    from include.config import ChunkConfig, EmbeddingConfig, pipeline_fingerprint
    from include.records import Chunk, StoryOutcome
    from include.store import ChunkStore
    from include.store.client import close_client, open_client

    client = open_client(uri)
    store = ChunkStore(client)
    store.schema.ensure_collections()
    fingerprint = pipeline_fingerprint(EmbeddingConfig().model_name, ChunkConfig())
    rng = np.random.default_rng(12)
    for start in range(0, len(story_ids), 1000):
        part = story_ids[start : start + 1000]
        items = [replay.items[i] for i in part]
        chunks = [Chunk(i["id"], 0, i["title"], i["url"], page_text(words, i["id"]), i["time"], 10, 0) for i in items]
        vectors = rng.standard_normal((len(chunks), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        outcomes = [StoryOutcome(i["id"], "ingested", i["title"], i["url"], chunk_count=1, fingerprint=fingerprint,
                                 posted_at=i["time"], points=10) for i in items]
        store.writer.write_batch(chunks, vectors, outcomes)
    total = len(store.ledger.story_rows())
    close_client(client, uri)
    return total


def store_counts(uri: str, job_started: bool = False) -> dict:
    from include.store import ChunkStore
    from include.store.client import close_client, open_client
    from include.store.collections import count

    client = open_client(uri)
    store = ChunkStore(client)
    store.schema.load()
    found = {"chunks": store.reader.count(), "keys": len({k[0] for k in store.reader.all_keys()})}
    if job_started:
        began = store.jobs.reindex().started_at
        found["not_rewritten"] = count(client, "hn_stories", f'status == "ingested" and updated_at < {began}')
    close_client(client, uri)
    return found


def reindex_progress(env) -> dict | None:
    """The status CLI's view of the running reindex (done, total, state), or None if it did not answer."""
    result = env.run(sys.executable, "-m", "include.ops.status", "--json", timeout=120, check=False)
    try:
        return json.loads(result.stdout).get("reindex")
    except (json.JSONDecodeError, AttributeError):
        return None



if __name__ == "__main__":
    main()
